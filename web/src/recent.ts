// Recently opened patients, kept on this device as ids only (no names or other patient data).
const KEY = 'caretrail.recentPatients';
const MAX = 8;

export function recentPatientIds(userId: string): string[] {
  try {
    const all = JSON.parse(localStorage.getItem(KEY) ?? '{}') as Record<string, string[]>;
    return Array.isArray(all[userId]) ? all[userId].slice(0, MAX) : [];
  } catch {
    return [];
  }
}

export function rememberPatient(userId: string, patientId: string): void {
  try {
    const all = JSON.parse(localStorage.getItem(KEY) ?? '{}') as Record<string, string[]>;
    const mine = (all[userId] ?? []).filter((id) => id !== patientId);
    all[userId] = [patientId, ...mine].slice(0, MAX);
    localStorage.setItem(KEY, JSON.stringify(all));
  } catch {
    // Storage full or blocked: the list is a convenience only.
  }
}
