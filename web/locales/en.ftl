# The connect page's messages, in English (the reference catalog: every other language has
# exactly these ids; a test checks it).

lang-name = English
title-connect = Connect { $name }
title-pick = Choose a service to connect
title-done = Connected
title-failed = Cannot connect

pick-intro = Pick the service you want to connect.
pick-search = Search services
pick-none = No service matches your search.
pick-back = Choose another service

form-intro = Enter the details below. They are sent only to { $name } and stored encrypted.
form-intro-redirect = { $name } needs these details before you sign in there.
form-optional = optional
form-example = Example: { $example }
form-docs = Where do I find this?
form-docs-new-tab = (opens in a new tab)
form-show = Show
form-hide = Hide
form-submit = Connect
form-continue = Continue to { $name }
form-working = Connecting…
form-errors = Some details need your attention.

field-missing = Enter your { $label }.
field-mismatch = { $label } does not have the expected format.
field-mismatch-example = { $label } does not have the expected format, for example { $example }.

test-unauthorized = { $name } did not accept these details (it answered { $status }). Check them and try again.
test-forbidden = { $name } accepted these details, but they lack a permission this app needs (it answered { $status }). Give them that access and try again.
test-rate-limited = { $name } is getting too many requests right now (it answered { $status }). Wait a minute and try again.
test-unavailable = { $name } is not answering properly right now (it answered { $status }). Try again later.
test-other = { $name } refused these details (it answered { $status }). Check them and try again.
unreachable = { $name } could not be reached. Try again later.

done-message = { $name } is connected. You can close this window.

outcome-access_denied = Access was not granted, so nothing was connected. You can close this window, and try again from the app if you change your mind.
outcome-invalid_state = This response does not belong to a connection started in this browser. Start again from the app.
outcome-flow_expired = This took too long and the request expired. Start again from the app.
outcome-provider = The provider did not complete the connection. Start again from the app.
outcome-token = The provider refused to complete the connection. Try again later; if it keeps failing, contact the app's support.
outcome-credential_test_failed = The connection was authorised, but the service refused it when checked. Try again, or contact the app's support.
outcome-connect_session_unusable = This link is invalid, expired or already used. Ask the app for a new one.
outcome-other = Something went wrong and nothing was connected: { $message }

category-crm = CRM
category-accounting = Accounting
category-payments = Payments
category-ecommerce = E-commerce
category-developer-tools = Developer tools
category-communication = Communication
category-email-marketing = E-mail marketing
category-support = Customer support
category-hr = HR
category-file-storage = File storage
category-productivity = Productivity
category-analytics = Analytics
category-cloud = Cloud
