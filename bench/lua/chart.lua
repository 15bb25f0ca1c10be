-- Audited chart reads: patient, notes page, documents page, for random seeded patients.
request = chartRequest
