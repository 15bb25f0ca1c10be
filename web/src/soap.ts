// SOAP notes are stored as plain text with four headed sections, readable anywhere (exports,
// the API, the owner portal) and parsed back into the four fields for editing.

export const SOAP_SECTIONS = [
  { key: 'subjective', heading: 'Subjective', hint: 'History and what the owner reports' },
  { key: 'objective', heading: 'Objective', hint: 'Examination findings, vitals, results' },
  { key: 'assessment', heading: 'Assessment', hint: 'Diagnosis or differential diagnoses' },
  { key: 'plan', heading: 'Plan', hint: 'Treatment, medication, follow-up' },
] as const;

export type SoapKey = (typeof SOAP_SECTIONS)[number]['key'];
export type Soap = Record<SoapKey, string>;

export const emptySoap = (): Soap => ({ subjective: '', objective: '', assessment: '', plan: '' });

export function soapToText(soap: Soap): string {
  return SOAP_SECTIONS.filter((s) => soap[s.key].trim() !== '')
    .map((s) => `${s.heading}:\n${soap[s.key].trim()}`)
    .join('\n\n');
}

/** The four sections of a SOAP body; text before any heading goes to Subjective. */
export function textToSoap(text: string): Soap {
  const soap = emptySoap();
  let current: SoapKey = 'subjective';
  const lines: Record<SoapKey, string[]> = {
    subjective: [],
    objective: [],
    assessment: [],
    plan: [],
  };
  for (const line of text.split('\n')) {
    const heading = SOAP_SECTIONS.find((s) => line.trim() === `${s.heading}:`);
    if (heading) current = heading.key;
    else lines[current].push(line);
  }
  for (const s of SOAP_SECTIONS) soap[s.key] = lines[s.key].join('\n').trim();
  return soap;
}
