# Los mensajes de la página de conexión, en español.

lang-name = Español
title-connect = Conectar { $name }
title-pick = Elija un servicio para conectar
title-done = Conectado
title-failed = No se puede conectar

pick-intro = Elija el servicio que quiere conectar.
pick-search = Buscar servicios
pick-none = Ningún servicio coincide con su búsqueda.
pick-back = Elegir otro servicio

form-intro = Introduzca los datos siguientes. Solo se envían a { $name } y se guardan cifrados.
form-intro-redirect = { $name } necesita estos datos antes de que inicie sesión allí.
form-optional = opcional
form-example = Ejemplo: { $example }
form-docs = ¿Dónde lo encuentro?
form-docs-new-tab = (se abre en una pestaña nueva)
form-show = Mostrar
form-hide = Ocultar
form-submit = Conectar
form-continue = Continuar a { $name }
form-working = Conectando…
form-errors = Hay datos que corregir.

field-missing = Introduzca { $label }.
field-mismatch = { $label } no tiene el formato esperado.
field-mismatch-example = { $label } no tiene el formato esperado, por ejemplo { $example }.

test-unauthorized = { $name } no aceptó estos datos (respondió { $status }). Revíselos y vuelva a intentarlo.
test-forbidden = { $name } aceptó estos datos, pero les falta un permiso que esta aplicación necesita (respondió { $status }). Concédalo y vuelva a intentarlo.
test-rate-limited = { $name } recibe demasiadas solicitudes ahora mismo (respondió { $status }). Espere un minuto y vuelva a intentarlo.
test-unavailable = { $name } no responde correctamente ahora mismo (respondió { $status }). Vuelva a intentarlo más tarde.
test-other = { $name } rechazó estos datos (respondió { $status }). Revíselos y vuelva a intentarlo.
unreachable = No se pudo contactar con { $name }. Vuelva a intentarlo más tarde.

done-message = { $name } está conectado. Puede cerrar esta ventana.

outcome-access_denied = No se concedió el acceso, así que no se conectó nada. Puede cerrar esta ventana y volver a intentarlo desde la aplicación si cambia de opinión.
outcome-invalid_state = Esta respuesta no corresponde a ninguna conexión iniciada en este navegador. Empiece de nuevo desde la aplicación.
outcome-flow_expired = Tardó demasiado y la solicitud caducó. Empiece de nuevo desde la aplicación.
outcome-provider = El servicio no completó la conexión. Empiece de nuevo desde la aplicación.
outcome-token = El servicio se negó a completar la conexión. Vuelva a intentarlo más tarde; si sigue fallando, contacte con el soporte de la aplicación.
outcome-credential_test_failed = La conexión se autorizó, pero el servicio la rechazó al comprobarla. Vuelva a intentarlo o contacte con el soporte de la aplicación.
outcome-connect_session_unusable = Este enlace ha caducado o ya se ha usado. Pida uno nuevo a la aplicación.
outcome-other = Algo salió mal y no se conectó nada: { $message }

category-crm = CRM
category-accounting = Contabilidad
category-payments = Pagos
category-ecommerce = Comercio electrónico
category-developer-tools = Herramientas para desarrolladores
category-communication = Comunicación
category-email-marketing = Marketing por correo
category-support = Atención al cliente
category-hr = Recursos humanos
category-file-storage = Almacenamiento de archivos
category-productivity = Productividad
category-analytics = Analítica
category-cloud = Nube
