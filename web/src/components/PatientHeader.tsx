// The top of the chart: who the patient is, at a glance.
import { useState } from 'react';
import {
  Alert,
  Badge,
  Button,
  Group,
  Modal,
  Paper,
  Stack,
  TagsInput,
  Text,
  Title,
} from '@mantine/core';
import { useQueryClient } from '@tanstack/react-query';
import { api } from '../api';
import { ErrorAlert } from './ErrorAlert';
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

function AlertsDialog({ patient, onClose }: { patient: Patient; onClose: () => void }) {
  const queryClient = useQueryClient();
  const [alerts, setAlerts] = useState(patient.alerts);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function save() {
    setBusy(true);
    setError(null);
    try {
      const updated = await api<Patient>('PATCH', `/patients/${patient.id}`, {
        body: { alerts },
        headers: { 'if-match': `"${patient.version}"` },
      });
      queryClient.setQueryData(['patient', patient.id], updated);
      onClose();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Modal opened onClose={onClose} title={`Alerts for ${patient.name}`}>
      <Stack>
        <TagsInput
          label="Alerts"
          description="Press Enter after each. Everyone who opens the chart sees them first."
          maxLength={200}
          value={alerts}
          onChange={setAlerts}
          clearable
          data-autofocus
        />
        <ErrorAlert error={error} title="The alerts were not saved" />
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            Cancel
          </Button>
          <Button loading={busy} onClick={() => void save()}>
            Save alerts
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}

export function PatientHeader({
  patient,
  abnormalResults,
  canEditAlerts,
}: {
  patient: Patient;
  abnormalResults: number;
  canEditAlerts: boolean;
}) {
  const age = ageOf(patient.birthDate);
  const [editing, setEditing] = useState(false);
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
          {(patient.alerts.length > 0 || canEditAlerts) && (
            <Group gap="xs" aria-label="Alerts" role="group">
              {patient.alerts.map((alert) => (
                <Badge
                  key={alert}
                  color="red"
                  variant="filled"
                  size="lg"
                  tt="none"
                  leftSection={<IconAlertTriangle size={14} aria-hidden />}
                >
                  {alert}
                </Badge>
              ))}
              {canEditAlerts && (
                <Button
                  size="compact-sm"
                  variant="subtle"
                  onClick={() => {
                    setEditing(true);
                  }}
                >
                  {patient.alerts.length > 0 ? 'Edit alerts' : 'Add an alert'}
                </Button>
              )}
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
      {editing && (
        <AlertsDialog
          patient={patient}
          onClose={() => {
            setEditing(false);
          }}
        />
      )}
    </Paper>
  );
}
