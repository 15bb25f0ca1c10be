// The chart: the patient's header, then the timeline, files, sharing, consents and the access
// report on one screen, each offered only to those who may use it.
import { useEffect } from 'react';
import { Button, Center, Group, Loader, Menu, Paper, Stack, Tabs, Title } from '@mantine/core';
import { IconChevronDown, IconPlus } from '@tabler/icons-react';
import { useQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api } from '../api';
import { capabilitiesFor } from '../capabilities';
import { AccessReport } from '../components/AccessReport';
import { ConsentsPanel } from '../components/ConsentsPanel';
import { ErrorAlert } from '../components/ErrorAlert';
import { PatientHeader } from '../components/PatientHeader';
import { SharingPanel } from '../components/SharingPanel';
import { Timeline, usePatientNotes } from '../components/Timeline';
import { UploadPanel } from '../components/UploadPanel';
import { rememberPatient } from '../recent';
import { useUser } from '../session';
import type { Patient } from '../types';

export function ChartPage() {
  const { id = '' } = useParams();
  const user = useUser();
  const patient = useQuery({
    queryKey: ['patient', id],
    queryFn: () => api<Patient>('GET', `/patients/${id}`),
  });
  const notes = usePatientNotes(id);

  useEffect(() => {
    if (patient.data) rememberPatient(user.id, patient.data.id);
  }, [patient.data, user.id]);

  if (patient.isLoading)
    return (
      <Center p="xl">
        <Loader role="status" aria-label="Loading the chart" />
      </Center>
    );
  if (!patient.data)
    return (
      <Stack>
        <Title order={1} size="h2">
          Patient
        </Title>
        <ErrorAlert error={patient.error} title="This chart could not be opened" />
      </Stack>
    );

  const p = patient.data;
  const can = capabilitiesFor(p);
  const abnormal = notes.items.filter((n) => n.result?.abnormal === true).length;

  return (
    <Stack gap="md" maw={1100}>
      <PatientHeader patient={p} abnormalResults={abnormal} canEditAlerts={can.editPatient} />
      {(can.writeNotes || can.editPatient) && (
        <Group>
          {can.writeNotes && (
            <>
              <Button
                component={Link}
                to={`/patients/${p.id}/notes/new?kind=soap`}
                leftSection={<IconPlus size={16} />}
              >
                New SOAP note
              </Button>
              <Menu>
                <Menu.Target>
                  <Button variant="default" rightSection={<IconChevronDown size={16} />}>
                    Other note
                  </Button>
                </Menu.Target>
                <Menu.Dropdown>
                  <Menu.Item component={Link} to={`/patients/${p.id}/notes/new?kind=behavior`}>
                    Behaviour note
                  </Menu.Item>
                  <Menu.Item component={Link} to={`/patients/${p.id}/notes/new?kind=training`}>
                    Training note
                  </Menu.Item>
                  <Menu.Item component={Link} to={`/patients/${p.id}/notes/new?kind=clinical`}>
                    Clinical note
                  </Menu.Item>
                  <Menu.Item component={Link} to={`/patients/${p.id}/notes/new?kind=visit`}>
                    Visit note
                  </Menu.Item>
                </Menu.Dropdown>
              </Menu>
            </>
          )}
          {can.editPatient && (
            <Button component={Link} to={`/patients/${p.id}/edit`} variant="subtle">
              Edit details
            </Button>
          )}
        </Group>
      )}
      <Tabs defaultValue="timeline" keepMounted={false}>
        <Tabs.List>
          <Tabs.Tab value="timeline">Timeline</Tabs.Tab>
          {can.uploadFiles && <Tabs.Tab value="upload">Upload files</Tabs.Tab>}
          {can.manageShares && <Tabs.Tab value="sharing">Sharing</Tabs.Tab>}
          {can.consents && <Tabs.Tab value="consents">Consents</Tabs.Tab>}
          {can.accessReport && <Tabs.Tab value="access">Who accessed</Tabs.Tab>}
        </Tabs.List>
        <Tabs.Panel value="timeline" pt="md">
          <Timeline patientId={p.id} canWrite={can.uploadFiles} />
        </Tabs.Panel>
        {can.uploadFiles && (
          <Tabs.Panel value="upload" pt="md">
            <Paper withBorder p="md">
              <UploadPanel patientId={p.id} ownerMode={can.isOwner} />
            </Paper>
          </Tabs.Panel>
        )}
        {can.manageShares && (
          <Tabs.Panel value="sharing" pt="md">
            <SharingPanel patient={p} />
          </Tabs.Panel>
        )}
        {can.consents && (
          <Tabs.Panel value="consents" pt="md">
            <ConsentsPanel patientId={p.id} />
          </Tabs.Panel>
        )}
        {can.accessReport && (
          <Tabs.Panel value="access" pt="md">
            <AccessReport patientId={p.id} />
          </Tabs.Panel>
        )}
      </Tabs>
    </Stack>
  );
}
