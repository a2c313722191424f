// Types for Latchkey's browser SDK, served at /latchkey.js (these at /latchkey.d.ts).

export interface Connection {
  /** The connection's id. */
  id: string;
  /** Its connector's id (absent when the result came from polling the session). */
  connector?: string;
  /** Its label, from the connector's credential test. */
  label?: string | null;
}

/** Why a flow did not make a connection. */
export interface LatchkeyError extends Error {
  /**
   * The connect session's code (`access_denied`, `token_refused`, `flow_expired`,
   * `credential_test_failed`, `invalid_request`, …), `popup_blocked` or `window_closed`.
   */
  code: string;
  /** Headless submissions: the refused fields, `missing`, `mismatch` or `invalid`. */
  fields?: Record<string, "missing" | "mismatch" | "invalid">;
}

export type LatchkeyEvent =
  | { type: "opened" }
  | { type: "closed" }
  | { type: "success"; connection: Connection }
  | { type: "error"; error: LatchkeyError };

export type LatchkeyEventType = LatchkeyEvent["type"];

export interface ConnectOptions {
  /** The token of a connect session (`POST /v1/connect-sessions`). */
  token: string;
  /** The Latchkey server; default: where latchkey.js was loaded from. */
  baseUrl?: string;
  /** Called with each lifecycle event of this flow. */
  onEvent?: (event: LatchkeyEvent) => void;
}

/** One integration a connect link offers to pick from. */
export interface Choice {
  integration: string;
  connector: string;
  name: string;
  category?: string | null;
}

/** A field the end user fills in. */
export interface Field {
  key: string;
  label: string;
  /** Hide the value as it is typed. */
  secret: boolean;
  /** A regular expression the whole value must match. */
  pattern?: string;
  help?: string;
  example?: string;
  /** The API's documentation page where the user finds the value. */
  docs_url?: string;
  /** The value the field starts with. */
  default?: string;
  optional: boolean;
}

/** A connect session as data, for an app that draws its own UI. */
export interface HeadlessSession {
  /** The language the session's messages are in. */
  lang: string;
  /** When the link stops working (RFC 3339). */
  expiresAt: string;
  /** The integrations to pick from; empty when the link names one. */
  choices: Choice[];
  /** Set once an integration is picked (or when the link names one). */
  integration: string | null;
  connector: string | null;
  name: string | null;
  /** The integration connects through the provider's consent page: call `authorize()`. */
  redirect: boolean;
  /** The fields to ask (before `authorize()`, only config the provider's URL needs). */
  fields: Field[];
  /** Picks one of `choices`; resolves with the session for that integration. */
  pick(integration: string): Promise<HeadlessSession>;
  /** Submits the fields' values; resolves with the connection made. */
  submit(values: Record<string, string>): Promise<Connection>;
  /** Opens the provider's consent popup (call from a click handler). */
  authorize(): Promise<Connection>;
}

export interface LatchkeySdk {
  /** Opens the connect popup; settles when the flow ends. Call from a click handler. */
  connect(options: ConnectOptions): Promise<Connection>;
  /** The session as data, for the app's own UI. */
  headless(options: ConnectOptions): Promise<HeadlessSession>;
  /** Listens to every flow's lifecycle events; returns a function that stops listening. */
  on<T extends LatchkeyEventType>(
    type: T,
    listener: (event: Extract<LatchkeyEvent, { type: T }>) => void,
  ): () => void;
}

declare global {
  interface Window {
    Latchkey: LatchkeySdk;
  }
  const Latchkey: LatchkeySdk;
}
