# 接続ページのメッセージ（日本語）。

lang-name = 日本語
title-connect = { $name } に接続
title-pick = 接続するサービスを選択
title-done = 接続しました
title-failed = 接続できません

pick-intro = 接続したいサービスを選んでください。
pick-search = サービスを検索
pick-none = 検索に一致するサービスはありません。
pick-back = 別のサービスを選ぶ

form-intro = 以下の情報を入力してください。情報は { $name } にのみ送信され、暗号化して保存されます。
form-intro-redirect = { $name } にサインインする前に、次の情報が必要です。
form-optional = 任意
form-example = 例: { $example }
form-docs = どこで確認できますか？
form-docs-new-tab = （新しいタブで開きます）
form-show = 表示
form-hide = 非表示
form-submit = 接続
form-continue = { $name } へ進む
form-working = 接続中…
form-errors = 確認が必要な項目があります。

field-missing = { $label } を入力してください。
field-mismatch = { $label } の形式が正しくありません。
field-mismatch-example = { $label } の形式が正しくありません（例: { $example }）。

test-unauthorized = { $name } はこの情報を受け付けませんでした（応答 { $status }）。内容を確認して、もう一度お試しください。
test-forbidden = { $name } はこの情報を受け付けましたが、このアプリに必要な権限がありません（応答 { $status }）。権限を付与して、もう一度お試しください。
test-rate-limited = { $name } は現在リクエストが多すぎます（応答 { $status }）。1 分ほど待ってから、もう一度お試しください。
test-unavailable = { $name } は現在正常に応答していません（応答 { $status }）。しばらくしてから、もう一度お試しください。
test-other = { $name } はこの情報を拒否しました（応答 { $status }）。内容を確認して、もう一度お試しください。
unreachable = { $name } に接続できませんでした。しばらくしてから、もう一度お試しください。

done-message = { $name } に接続しました。このウィンドウは閉じてかまいません。

outcome-access_denied = アクセスが許可されなかったため、何も接続されていません。このウィンドウを閉じ、気が変わったらアプリからもう一度お試しください。
outcome-invalid_state = この応答は、このブラウザーで開始された接続のものではありません。アプリからやり直してください。
outcome-flow_expired = 時間がかかりすぎたため、リクエストの有効期限が切れました。アプリからやり直してください。
outcome-provider = サービスが接続を完了しませんでした。アプリからやり直してください。
outcome-token = サービスが接続の完了を拒否しました。しばらくしてからお試しください。失敗が続く場合は、アプリのサポートにお問い合わせください。
outcome-credential_test_failed = 接続は承認されましたが、確認の際にサービスに拒否されました。もう一度お試しいただくか、アプリのサポートにお問い合わせください。
outcome-connect_session_unusable = このリンクは有効期限が切れているか、すでに使用されています。アプリに新しいリンクを依頼してください。
outcome-other = 問題が発生したため、何も接続されていません: { $message }

category-crm = CRM
category-accounting = 会計
category-payments = 決済
category-ecommerce = EC
category-developer-tools = 開発者ツール
category-communication = コミュニケーション
category-email-marketing = メールマーケティング
category-support = カスタマーサポート
category-hr = 人事
category-file-storage = ファイルストレージ
category-productivity = 生産性
category-analytics = 分析
category-cloud = クラウド
