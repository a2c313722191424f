# Les messages de la page de connexion, en français.

lang-name = Français
title-connect = Connecter { $name }
title-pick = Choisissez un service à connecter
title-done = Connecté
title-failed = Connexion impossible

pick-intro = Choisissez le service que vous voulez connecter.
pick-search = Rechercher un service
pick-none = Aucun service ne correspond à votre recherche.
pick-back = Choisir un autre service

form-intro = Saisissez les informations ci-dessous. Elles ne sont envoyées qu'à { $name } et sont stockées chiffrées.
form-intro-redirect = { $name } a besoin de ces informations avant que vous vous y connectiez.
form-optional = facultatif
form-example = Exemple : { $example }
form-docs = Où trouver cette information ?
form-docs-new-tab = (s'ouvre dans un nouvel onglet)
form-show = Afficher
form-hide = Masquer
form-submit = Connecter
form-continue = Continuer vers { $name }
form-working = Connexion…
form-errors = Certaines informations sont à corriger.

field-missing = Saisissez : { $label }.
field-mismatch = { $label } n'a pas le format attendu.
field-mismatch-example = { $label } n'a pas le format attendu, par exemple { $example }.

test-unauthorized = { $name } n'a pas accepté ces informations (réponse { $status }). Vérifiez-les et réessayez.
test-forbidden = { $name } a accepté ces informations, mais il leur manque une autorisation dont cette application a besoin (réponse { $status }). Accordez-la et réessayez.
test-rate-limited = { $name } reçoit trop de requêtes en ce moment (réponse { $status }). Patientez une minute et réessayez.
test-unavailable = { $name } ne répond pas correctement en ce moment (réponse { $status }). Réessayez plus tard.
test-other = { $name } a refusé ces informations (réponse { $status }). Vérifiez-les et réessayez.
unreachable = { $name } est injoignable. Réessayez plus tard.

done-message = { $name } est connecté. Vous pouvez fermer cette fenêtre.

outcome-access_denied = L'accès n'a pas été accordé : rien n'a été connecté. Vous pouvez fermer cette fenêtre et réessayer depuis l'application si vous changez d'avis.
outcome-invalid_state = Cette réponse ne correspond à aucune connexion commencée dans ce navigateur. Recommencez depuis l'application.
outcome-flow_expired = Cela a pris trop de temps et la demande a expiré. Recommencez depuis l'application.
outcome-provider = Le service n'a pas terminé la connexion. Recommencez depuis l'application.
outcome-token = Le service a refusé de terminer la connexion. Réessayez plus tard ; si cela persiste, contactez le support de l'application.
outcome-credential_test_failed = La connexion a été autorisée, mais le service l'a refusée lors de la vérification. Réessayez ou contactez le support de l'application.
outcome-connect_session_unusable = Ce lien a expiré ou a déjà servi. Demandez-en un nouveau à l'application.
outcome-other = Un problème est survenu et rien n'a été connecté : { $message }

category-crm = CRM
category-accounting = Comptabilité
category-payments = Paiements
category-ecommerce = E-commerce
category-developer-tools = Outils de développement
category-communication = Communication
category-email-marketing = Marketing par e-mail
category-support = Support client
category-hr = RH
category-file-storage = Stockage de fichiers
category-productivity = Productivité
category-analytics = Analytique
category-cloud = Cloud
