# Die Meldungen der Verbindungsseite, auf Deutsch.

lang-name = Deutsch
title-connect = { $name } verbinden
title-pick = Dienst zum Verbinden auswählen
title-done = Verbunden
title-failed = Verbindung nicht möglich

pick-intro = Wählen Sie den Dienst, den Sie verbinden möchten.
pick-search = Dienste durchsuchen
pick-none = Kein Dienst passt zu Ihrer Suche.
pick-back = Anderen Dienst wählen

form-intro = Geben Sie unten die Angaben ein. Sie werden nur an { $name } gesendet und verschlüsselt gespeichert.
form-intro-redirect = { $name } benötigt diese Angaben, bevor Sie sich dort anmelden.
form-optional = optional
form-example = Beispiel: { $example }
form-docs = Wo finde ich das?
form-docs-new-tab = (öffnet in einem neuen Tab)
form-show = Anzeigen
form-hide = Verbergen
form-submit = Verbinden
form-continue = Weiter zu { $name }
form-working = Wird verbunden…
form-errors = Einige Angaben müssen korrigiert werden.

field-missing = Geben Sie { $label } ein.
field-mismatch = { $label } hat nicht das erwartete Format.
field-mismatch-example = { $label } hat nicht das erwartete Format, zum Beispiel { $example }.

test-unauthorized = { $name } hat diese Angaben nicht akzeptiert (Antwort { $status }). Prüfen Sie sie und versuchen Sie es erneut.
test-forbidden = { $name } hat diese Angaben akzeptiert, aber ihnen fehlt eine Berechtigung, die diese App braucht (Antwort { $status }). Erteilen Sie sie und versuchen Sie es erneut.
test-rate-limited = { $name } erhält gerade zu viele Anfragen (Antwort { $status }). Warten Sie eine Minute und versuchen Sie es erneut.
test-unavailable = { $name } antwortet gerade nicht richtig (Antwort { $status }). Versuchen Sie es später erneut.
test-other = { $name } hat diese Angaben abgelehnt (Antwort { $status }). Prüfen Sie sie und versuchen Sie es erneut.
unreachable = { $name } ist nicht erreichbar. Versuchen Sie es später erneut.

done-message = { $name } ist verbunden. Sie können dieses Fenster schließen.

outcome-access_denied = Der Zugriff wurde nicht gewährt, es wurde nichts verbunden. Sie können dieses Fenster schließen und es in der App erneut versuchen, wenn Sie es sich anders überlegen.
outcome-invalid_state = Diese Antwort gehört zu keiner Verbindung, die in diesem Browser begonnen wurde. Beginnen Sie erneut in der App.
outcome-flow_expired = Das hat zu lange gedauert, die Anfrage ist abgelaufen. Beginnen Sie erneut in der App.
outcome-provider = Der Dienst hat die Verbindung nicht abgeschlossen. Beginnen Sie erneut in der App.
outcome-token = Der Dienst hat den Abschluss der Verbindung verweigert. Versuchen Sie es später erneut; wenn es weiter fehlschlägt, wenden Sie sich an den Support der App.
outcome-credential_test_failed = Die Verbindung wurde autorisiert, aber der Dienst hat sie bei der Prüfung abgelehnt. Versuchen Sie es erneut oder wenden Sie sich an den Support der App.
outcome-connect_session_unusable = Dieser Link ist abgelaufen oder wurde schon verwendet. Bitten Sie die App um einen neuen.
outcome-other = Etwas ist schiefgegangen, es wurde nichts verbunden: { $message }

category-crm = CRM
category-accounting = Buchhaltung
category-payments = Zahlungen
category-ecommerce = E-Commerce
category-developer-tools = Entwicklerwerkzeuge
category-communication = Kommunikation
category-email-marketing = E-Mail-Marketing
category-support = Kundensupport
category-hr = Personalwesen
category-file-storage = Dateispeicher
category-productivity = Produktivität
category-analytics = Analyse
category-cloud = Cloud
