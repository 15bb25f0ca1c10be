// JSON shapes the API answers with, as the tests read them, and error helpers.
import type { LightMyRequestResponse } from 'fastify';

export interface OwnerJson {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
}

export interface PatientJson {
  id: string;
  organizationId: string;
  name: string;
  species: string;
  breed: string | null;
  sex: string | null;
  birthDate: string | null;
  alerts: string[];
  identifiers: { system: string; value: string }[];
  owners: OwnerJson[];
  version: number;
  createdAt: string;
  updatedAt: string;
}

export interface PageJson<T = PatientJson> {
  items: T[];
  nextCursor: string | null;
}

export interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

export const errorOf = (res: LightMyRequestResponse) => res.json<ErrorBody>().error;

/** The error as a client compares it: everything but the per-request id. */
export function publicError(res: LightMyRequestResponse): { code: string; message: string } {
  const { code, message } = errorOf(res);
  return { code, message };
}
