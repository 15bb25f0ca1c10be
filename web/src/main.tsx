// The web app's entry: theme, data cache, notifications, session and routes.
import '@mantine/core/styles.css';
import '@mantine/dropzone/styles.css';
import '@mantine/notifications/styles.css';
import './app.css';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import {
  MantineProvider,
  Modal,
  Notification,
  createTheme,
  darken,
  defaultVariantColorsResolver,
  parseThemeColor,
  type CSSVariablesResolver,
  type VariantColorsResolver,
} from '@mantine/core';
import { ModalsProvider } from '@mantine/modals';
import { Notifications } from '@mantine/notifications';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { BrowserRouter } from 'react-router';
import { App } from './App';
import { SessionProvider } from './session';

// Light and outline badges, buttons and alerts get text a good deal darker than Mantine's
// shade 9 (yellow 9 on yellow 0 is 2.7:1), so every colour passes WCAG AA (4.5:1).
const variantColorResolver: VariantColorsResolver = (input) => {
  const colors = defaultVariantColorsResolver(input);
  if (input.variant !== 'light' && input.variant !== 'outline') return colors;
  const parsed = parseThemeColor({
    color: input.color,
    theme: input.theme,
  });
  if (!parsed.isThemeColor) return colors;
  // The value of a theme colour without a shade is its shade 9 (primaryShade).
  const dark = darken(parsed.value, 0.35);
  return {
    ...colors,
    color: dark,
    ...(input.variant === 'outline' ? { border: `1px solid ${dark}` } : {}),
  };
};

const theme = createTheme({
  variantColorResolver,
  primaryColor: 'teal',
  // The darkest shade keeps white text on filled buttons at WCAG AA contrast (4.5:1).
  primaryShade: 9,
  defaultRadius: 'md',
  fontFamily: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  components: {
    // Icon-only close buttons need a name for screen readers.
    Notification: Notification.extend({
      defaultProps: { closeButtonProps: { 'aria-label': 'Close the message' } },
    }),
    Modal: Modal.extend({
      defaultProps: { closeButtonProps: { 'aria-label': 'Close the dialog' } },
    }),
  },
});

// Mantine's default "dimmed" grey is 3.3:1 on white; gray.7 reaches AA for small text. Filled
// buttons and links hover one shade lighter, which from shade 9 drops white text below AA
// (3.9:1): every colour hovers darker instead.
const cssVariablesResolver: CSSVariablesResolver = (t) => ({
  variables: {},
  light: {
    '--mantine-color-dimmed': t.colors.gray[7],
    '--mantine-primary-color-filled-hover': darken(t.colors[t.primaryColor]?.[9] ?? '#000', 0.15),
    ...Object.fromEntries(
      Object.entries(t.colors).map(([name, shades]) => [
        `--mantine-color-${name}-filled-hover`,
        darken(shades[9], 0.15),
      ]),
    ),
  },
  dark: {},
});

// No background refetching: the inactivity timer should count what the person does.
const queryClient = new QueryClient({
  defaultOptions: {
    queries: { refetchOnWindowFocus: false, retry: false, staleTime: 30_000 },
  },
});

const root = document.getElementById('root');
if (root)
  createRoot(root).render(
    <StrictMode>
      <MantineProvider theme={theme} cssVariablesResolver={cssVariablesResolver}>
        <QueryClientProvider client={queryClient}>
          <ModalsProvider>
            <Notifications position="top-right" />
            <BrowserRouter>
              <SessionProvider>
                <App />
              </SessionProvider>
            </BrowserRouter>
          </ModalsProvider>
        </QueryClientProvider>
      </MantineProvider>
    </StrictMode>,
  );
