// The frame of every signed-in page: header with search and account menu, and a navigation bar
// that folds away on tablets.
import type { ReactNode } from 'react';
import {
  AppShell,
  Burger,
  Group,
  Menu,
  NavLink,
  Text,
  UnstyledButton,
  VisuallyHidden,
  Avatar,
} from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import {
  IconDatabaseExport,
  IconFileAnalytics,
  IconHome,
  IconKey,
  IconListSearch,
  IconLogout,
  IconShieldLock,
  IconUserPlus,
  IconUsers,
} from '@tabler/icons-react';
import { Link, useLocation } from 'react-router';
import { isStaff, useSession, useUser } from '../session';
import { ROLE_LABEL } from '../format';
import { PatientSearch } from './PatientSearch';

interface NavItem {
  to: string;
  label: string;
  icon: typeof IconHome;
}

function navItems(role: string | null, staff: boolean): NavItem[] {
  if (!staff) return [{ to: '/', label: 'My animals', icon: IconHome }];
  const items: NavItem[] = [{ to: '/', label: 'Patients', icon: IconHome }];
  if (role !== 'auditor')
    items.push({ to: '/patients/new', label: 'Register patient', icon: IconUserPlus });
  // Reconciling results is clinical work: the server refuses the queue to admins.
  if (role === 'clinician' || role === 'nurse')
    items.push({ to: '/results', label: 'Results inbox', icon: IconFileAnalytics });
  if (role === 'admin' || role === 'auditor')
    items.push({ to: '/audit', label: 'Audit trail', icon: IconListSearch });
  if (role === 'admin') {
    items.push({ to: '/admin/users', label: 'Users', icon: IconUsers });
    items.push({ to: '/admin/keys', label: 'Integration keys', icon: IconKey });
    items.push({ to: '/admin/backups', label: 'Backups', icon: IconDatabaseExport });
  }
  return items;
}

export function Shell({ children }: { children: ReactNode }) {
  const user = useUser();
  const { signOut } = useSession();
  const location = useLocation();
  const [opened, { toggle, close }] = useDisclosure();
  const staff = isStaff(user);

  return (
    <AppShell
      header={{ height: 60 }}
      navbar={{ width: 230, breakpoint: 'md', collapsed: { mobile: !opened } }}
      padding="md"
    >
      <AppShell.Header>
        <Group h="100%" px="md" gap="sm" wrap="nowrap">
          <Burger
            opened={opened}
            onClick={toggle}
            hiddenFrom="md"
            size="sm"
            aria-label={opened ? 'Close navigation' : 'Open navigation'}
          />
          <Text
            component={Link}
            to="/"
            fw={800}
            c="teal.9"
            size="lg"
            style={{ textDecoration: 'none', whiteSpace: 'nowrap' }}
          >
            Caretrail
          </Text>
          <div style={{ flex: 1, maxWidth: 560 }}>{staff && <PatientSearch />}</div>
          <Menu position="bottom-end" withinPortal>
            <Menu.Target>
              <UnstyledButton>
                <Group gap={8} wrap="nowrap">
                  <Avatar size="sm" color="teal" variant="filled" name={user.name} aria-hidden />
                  <Text size="sm" truncate maw={160}>
                    <VisuallyHidden>Account menu for </VisuallyHidden>
                    {user.name}
                  </Text>
                </Group>
              </UnstyledButton>
            </Menu.Target>
            <Menu.Dropdown>
              <Menu.Label>
                {user.email}
                {user.role ? ` · ${ROLE_LABEL[user.role] ?? user.role}` : ''}
              </Menu.Label>
              <Menu.Item component={Link} to="/account" leftSection={<IconShieldLock size={16} />}>
                Account and two-step sign-in
              </Menu.Item>
              <Menu.Item leftSection={<IconLogout size={16} />} onClick={() => void signOut()}>
                Sign out
              </Menu.Item>
            </Menu.Dropdown>
          </Menu>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="sm" aria-label="Main">
        {navItems(user.role, staff).map((item) => (
          <NavLink
            key={item.to}
            component={Link}
            to={item.to}
            label={item.label}
            leftSection={<item.icon size={18} aria-hidden />}
            active={location.pathname === item.to}
            variant="filled"
            onClick={close}
          />
        ))}
      </AppShell.Navbar>
      <AppShell.Main>{children}</AppShell.Main>
    </AppShell>
  );
}
