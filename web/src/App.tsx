// Routes and the frame around every signed-in page. Page addresses carry opaque ids only:
// no names, no search text, nothing about a patient.
import { Center, Loader } from '@mantine/core';
import { Navigate, Route, Routes, useLocation } from 'react-router';
import { isStaff, useSession } from './session';
import { Shell } from './components/Shell';
import { SetupPage } from './pages/SetupPage';
import { SignInPage } from './pages/SignInPage';
import { InvitationPage } from './pages/InvitationPage';
import { HomePage } from './pages/HomePage';
import { EditPatientPage, RegisterPatientPage } from './pages/RegisterPatientPage';
import { ChartPage } from './pages/ChartPage';
import { NotePage } from './pages/NotePage';
import { PortalPage } from './pages/PortalPage';
import { ResultsInboxPage } from './pages/ResultsInboxPage';
import { UsersPage } from './pages/UsersPage';
import { IntegrationKeysPage } from './pages/IntegrationKeysPage';
import { AuditPage } from './pages/AuditPage';
import { BackupsPage } from './pages/BackupsPage';
import { AccountPage } from './pages/AccountPage';
import { NotFoundPage } from './pages/NotFoundPage';

export function App() {
  const { user, loading } = useSession();
  const location = useLocation();

  if (location.pathname === '/setup') return <SetupPage />;
  if (location.pathname === '/invitations') return <InvitationPage />;
  if (loading)
    return (
      <Center h="100vh">
        <Loader role="status" aria-label="Loading" />
      </Center>
    );
  if (!user) return <SignInPage />;

  const staff = isStaff(user);
  return (
    <Shell>
      <Routes>
        <Route path="/" element={staff ? <HomePage /> : <PortalPage />} />
        <Route path="/sign-in" element={<Navigate to="/" replace />} />
        <Route path="/patients/new" element={<RegisterPatientPage />} />
        <Route path="/patients/:id" element={<ChartPage />} />
        <Route path="/patients/:id/edit" element={<EditPatientPage />} />
        <Route path="/patients/:patientId/notes/new" element={<NotePage />} />
        <Route path="/notes/:id" element={<NotePage />} />
        <Route path="/results" element={<ResultsInboxPage />} />
        <Route path="/admin/users" element={<UsersPage />} />
        <Route path="/admin/keys" element={<IntegrationKeysPage />} />
        <Route path="/admin/backups" element={<BackupsPage />} />
        <Route path="/audit" element={<AuditPage />} />
        <Route path="/account" element={<AccountPage />} />
        <Route path="*" element={<NotFoundPage />} />
      </Routes>
    </Shell>
  );
}
