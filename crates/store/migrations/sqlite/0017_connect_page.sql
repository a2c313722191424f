-- The connect page: a session may offer several integrations to pick from (`choices`, a JSON
-- array; NULL: only `integration`), speak a given language (`lang`), and end a full-page flow
-- on the app's `return_url`.

ALTER TABLE connect_sessions ADD COLUMN choices TEXT;
ALTER TABLE connect_sessions ADD COLUMN lang TEXT;
ALTER TABLE connect_sessions ADD COLUMN return_url TEXT;

-- The connect page's branding (a JSON object: display name, logo, colour, theme, custom CSS)
-- of an environment (`integration` empty) or of one of its integrations.
CREATE TABLE brandings (
    environment TEXT NOT NULL,
    integration TEXT NOT NULL,
    branding TEXT NOT NULL,
    PRIMARY KEY (environment, integration)
);
