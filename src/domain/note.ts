// Note vocabulary and the draft → final → addenda lifecycle rules.
import { AppError } from './errors.js';

export const NOTE_KINDS = ['soap', 'clinical', 'behavior', 'training', 'result', 'visit'] as const;
export type NoteKind = (typeof NOTE_KINDS)[number];

export { VISIBILITIES as NOTE_VISIBILITIES, type Visibility as NoteVisibility } from './access.js';

export type NoteStatus = 'draft' | 'final';

export type NoteChange =
  'created' | 'edited' | 'finalized' | 'addendum' | 'released' | 'addendum_released';

/** A final note is locked: only addenda may follow. */
export function assertEditable(status: NoteStatus): void {
  if (status === 'final') {
    throw new AppError('conflict', 'This note is final and locked; add an addendum instead.');
  }
}

export function assertCanAmend(status: NoteStatus): void {
  if (status !== 'final') {
    throw new AppError('conflict', 'Only a final note takes addenda; edit the draft instead.');
  }
}
