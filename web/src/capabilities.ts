// What the signed-in person may do with one patient, from how they reach it (the API's
// `access`). The server decides; this only hides buttons that would be refused.
import type { Patient } from './types';

export function capabilitiesFor(patient: Patient) {
  const { via, role, write } = patient.access;
  const staffRole = via === 'organization' ? role : null;
  const shareRole = via === 'share' ? role : null;
  const clinical = staffRole === 'clinician' || staffRole === 'nurse';
  const manager = clinical || staffRole === 'admin';
  return {
    isOwner: shareRole === 'owner',
    isStaff: staffRole !== null,
    /** Editing the patient record itself (alerts, details): staff of its organization. */
    editPatient: staffRole !== null && staffRole !== 'auditor',
    writeNotes: clinical || (shareRole !== null && shareRole !== 'owner' && write),
    finalize: staffRole === 'clinician',
    release: clinical,
    uploadFiles: clinical || (shareRole !== null && write),
    manageShares: manager,
    consents: manager || shareRole === 'owner',
    accessReport: (staffRole !== null && staffRole !== 'auditor') || shareRole === 'owner',
  };
}

export type Capabilities = ReturnType<typeof capabilitiesFor>;
