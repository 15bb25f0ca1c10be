// The top of the chart: who the patient is, at a glance.
import { Alert, Badge, Group, Paper, Stack, Text, Title } from '@mantine/core';
import { IconAlertTriangle } from '@tabler/icons-react';
import {
  ageOf,
  formatDate,
  formatDateTime,
  IDENTIFIER_LABEL,
  SEX_LABEL,
  speciesLabel,
} from '../format';
import type { Patient } from '../types';
import { SpeciesIcon } from './SpeciesIcon';

export function PatientHeader({
  patient,
  abnormalResults,
}: {
  patient: Patient;
  abnormalResults: number;
}) {
  const age = ageOf(patient.birthDate);
  return (
    <Paper withBorder p="md" component="header" aria-label="Patient">
      <Group align="flex-start" wrap="nowrap">
        <SpeciesIcon species={patient.species} size="xl" />
        <Stack gap={4} style={{ flex: 1, minWidth: 0 }}>
          <Group gap="sm">
            <Title order={1} size="h2">
              {patient.name}
            </Title>
            <Text c="dimmed">
              {[
                speciesLabel(patient.species),
                patient.breed,
                patient.sex ? SEX_LABEL[patient.sex] : null,
              ]
                .filter(Boolean)
                .join(' · ')}
            </Text>
          </Group>
          <Group gap="lg" wrap="wrap">
            {patient.birthDate && (
              <Text size="sm">
                Born {formatDate(patient.birthDate)}
                {age ? ` (${age})` : ''}
              </Text>
            )}
            {patient.owners.length > 0 && (
              <Text size="sm">
                Owner{patient.owners.length > 1 ? 's' : ''}:{' '}
                {patient.owners.map((o) => [o.name, o.phone].filter(Boolean).join(', ')).join('; ')}
              </Text>
            )}
          </Group>
          {patient.identifiers.length > 0 && (
            <Group gap="xs">
              {patient.identifiers.map((i) => (
                <Badge key={`${i.system}-${i.value}`} variant="outline" color="gray" tt="none">
                  {IDENTIFIER_LABEL[i.system] ?? i.system}: {i.value}
                </Badge>
              ))}
            </Group>
          )}
          {abnormalResults > 0 && (
            <Alert
              color="red"
              variant="light"
              p="xs"
              icon={<IconAlertTriangle size={18} aria-hidden />}
            >
              {abnormalResults} result{abnormalResults > 1 ? 's' : ''} with abnormal values in the
              loaded timeline.
            </Alert>
          )}
          {patient.access.via === 'break_glass' && (
            <Alert color="orange" variant="light" p="xs">
              Emergency (break-glass) access until{' '}
              {patient.access.expiresAt ? formatDateTime(patient.access.expiresAt) : '—'}. Every
              access is recorded and reviewed.
            </Alert>
          )}
          {patient.access.via === 'share' && patient.access.expiresAt && (
            <Text size="xs" c="dimmed">
              Shared with you until {formatDateTime(patient.access.expiresAt)}.
            </Text>
          )}
        </Stack>
      </Group>
    </Paper>
  );
}
