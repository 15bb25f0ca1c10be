// Talks to the v1 API with the sign-in cookie. Every failure becomes an ApiError whose message
// is the server's own (written for people) and says what to do next.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
  ) {
    super(message);
  }
}

/** Listeners told of every answer from the server (the inactivity timer) and of a 401. */
const activityListeners = new Set<() => void>();
const signedOutListeners = new Set<() => void>();
export function onActivity(listener: () => void): () => void {
  activityListeners.add(listener);
  return () => activityListeners.delete(listener);
}
export function onSignedOut(listener: () => void): () => void {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

const NETWORK_MESSAGE = 'Caretrail did not answer. Check the network connection, then try again.';

async function errorFrom(res: Response): Promise<ApiError> {
  let code = 'error';
  let message = `The server answered ${res.status}. Try again; if it keeps happening, tell your administrator.`;
  let requestId = res.headers.get('x-request-id');
  try {
    const body = (await res.json()) as {
      error?: { code?: string; message?: string; requestId?: string };
    };
    if (body.error?.message) {
      code = body.error.code ?? code;
      message = body.error.message;
      requestId = body.error.requestId ?? requestId;
    }
  } catch {
    // Not JSON: keep the generic message.
  }
  return new ApiError(res.status, code, message, requestId);
}

function noteAnswer(status: number, path: string) {
  if (status === 401 && !path.startsWith('/auth/session')) {
    for (const listener of signedOutListeners) listener();
  } else {
    for (const listener of activityListeners) listener();
  }
}

export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A JSON call to /api/v1{path}; resolves to the parsed body (undefined for 204). */
export async function api<T>(
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE',
  path: string,
  options: RequestOptions = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  if (method !== 'GET') headers['x-caretrail-csrf'] = '1';
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      headers,
      credentials: 'same-origin',
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (err) {
    if (err instanceof DOMException && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', NETWORK_MESSAGE, null);
  }
  noteAnswer(res.status, path);
  if (!res.ok) throw await errorFrom(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/**
 * A fresh Idempotency-Key. crypto.randomUUID exists only on HTTPS and localhost pages; a clinic
 * reaching the server over plain HTTP on its own network still gets random keys this way.
 */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The query string for a list call; undefined and empty values are left out. */
export function query(params: Record<string, string | number | boolean | undefined | null>) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params))
    if (value !== undefined && value !== null && value !== '') search.set(key, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}

/**
 * Uploads a file as multipart with progress (fetch cannot report upload progress).
 * `onProgress` gets a fraction from 0 to 1.
 */
export function upload<T>(
  method: 'POST' | 'PUT',
  path: string,
  form: FormData,
  onProgress: (fraction: number) => void,
): { promise: Promise<T>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  const promise = new Promise<T>((resolve, reject) => {
    xhr.open(method, `/api/v1${path}`);
    xhr.setRequestHeader('x-caretrail-csrf', '1');
    xhr.setRequestHeader('accept', 'application/json');
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onerror = () => {
      reject(new ApiError(0, 'network', NETWORK_MESSAGE, null));
    };
    xhr.onabort = () => {
      reject(new ApiError(0, 'aborted', 'The upload was cancelled.', null));
    };
    xhr.onload = () => {
      noteAnswer(xhr.status, path);
      const res = new Response(xhr.status === 204 ? null : xhr.responseText, {
        status: xhr.status,
        headers: { 'content-type': xhr.getResponseHeader('content-type') ?? '' },
      });
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(JSON.parse(xhr.responseText) as T);
      } else void errorFrom(res).then(reject);
    };
    xhr.send(form);
  });
  return {
    promise,
    abort: () => {
      xhr.abort();
    },
  };
}

/** The message to show a person for any error thrown by a call. */
export function messageOf(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  return 'Something went wrong in the page. Reload it and try again.';
}
