// The admin API's shapes, as the engine serialises them (src/capture/store.rs and
// src/admin/mod.rs).

/** One captured request; the body fields are empty in list answers. */
export interface RequestRow {
  id: string;
  /** Unix seconds. */
  started_at: number;
  session_id: string;
  client_host: string;
  user_agent: string;
  frontend: string;
  backend: string;
  model_requested: string;
  model_used: string;
  key_name: string;
  status: number;
  stream: boolean;
  latency_ms: number;
  ttfb_ms: number;
  upstream_ms: number;
  input_tokens: number;
  output_tokens: number;
  tokens_estimated: boolean;
  error: string;
  client_headers: string;
  /** The provider's `:status` and response headers, as JSON text. */
  upstream_headers: string;
  client_request: string;
  upstream_request: string;
  upstream_response: string;
  client_response: string;
  prompt_text: string;
  response_text: string;
}

export interface ListParams {
  q?: string;
  session?: string;
  backend?: string;
  model?: string;
  status?: number;
  since?: number;
  until?: number;
  limit?: number;
  offset?: number;
}

export interface BackendStats {
  backend: string;
  model: string;
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  mean_latency_ms: number;
}

export interface Stats {
  requests: number;
  /** Rows the store dropped because its writer fell behind. */
  dropped: number;
  wire_capture_dropped: number;
  backends: BackendStats[];
}

export interface Usage {
  group: string;
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
}

export interface TimelinePoint {
  start: number;
  requests: number;
  errors: number;
  input_tokens: number;
  output_tokens: number;
  mean_latency_ms: number;
  max_latency_ms: number;
}

/** GET /admin/api/timeline: a window of time buckets; empty buckets are left out. */
export interface Timeline {
  since: number;
  until: number;
  /** Bucket width in seconds. */
  bucket: number;
  data: TimelinePoint[];
}

export interface ReplayParams {
  backend?: string;
  model?: string;
}

export interface Replayed {
  status: number;
  request_id: string | null;
  model: string;
  body: unknown;
}

/** GET / : what llmux serves and which back-ends it has. */
export interface ServerInfo {
  name: string;
  version: string;
  default_backend: string;
  backends: { id: string; type: string; default: boolean; usable: boolean }[];
  auth: boolean;
}
