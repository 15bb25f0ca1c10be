// Looks at an image or a DICOM preview: zoom (buttons, wheel, + and -), pan (drag or arrow
// keys), and for DICOM previews window and level, applied to the preview's grey values.
import { useEffect, useRef, useState } from 'react';
import { ActionIcon, Group, Modal, Slider, Stack, Text, Tooltip } from '@mantine/core';
import { IconZoomIn, IconZoomOut, IconZoomReset } from '@tabler/icons-react';
import type { CaretrailDocument } from '../types';

export const isDicom = (doc: { contentType: string }) => doc.contentType === 'application/dicom';
export const isImage = (doc: { contentType: string }) => doc.contentType.startsWith('image/');

/** Grey value v of the 8-bit preview through a window of `width` centred on `level`. */
function windowed(v: number, level: number, width: number): number {
  const low = level - width / 2;
  return Math.max(0, Math.min(255, ((v - low) / width) * 255));
}

function WindowedCanvas({
  src,
  level,
  width,
  alt,
}: {
  src: string;
  level: number;
  width: number;
  alt: string;
}) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [pixels, setPixels] = useState<ImageData | null>(null);

  useEffect(() => {
    const image = new Image();
    image.onload = () => {
      const scratch = document.createElement('canvas');
      scratch.width = image.naturalWidth;
      scratch.height = image.naturalHeight;
      const ctx = scratch.getContext('2d');
      if (!ctx) return;
      ctx.drawImage(image, 0, 0);
      setPixels(ctx.getImageData(0, 0, scratch.width, scratch.height));
    };
    image.src = src;
  }, [src]);

  useEffect(() => {
    const target = canvas.current;
    if (!pixels || !target) return;
    target.width = pixels.width;
    target.height = pixels.height;
    const out = new ImageData(pixels.width, pixels.height);
    const lut = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) lut[v] = windowed(v, level, width);
    for (let i = 0; i < pixels.data.length; i += 4) {
      const grey = lut[pixels.data[i] ?? 0] ?? 0;
      out.data[i] = grey;
      out.data[i + 1] = grey;
      out.data[i + 2] = grey;
      out.data[i + 3] = 255;
    }
    target.getContext('2d')?.putImageData(out, 0, 0);
  }, [pixels, level, width]);

  return (
    <canvas
      ref={canvas}
      role="img"
      aria-label={alt}
      style={{ maxWidth: '100%', maxHeight: '100%' }}
    />
  );
}

/** Keyed by document id where used, so each file opens at 100% with the default window. */
export function ImageViewer({ doc, onClose }: { doc: CaretrailDocument; onClose: () => void }) {
  const [zoom, setZoom] = useState(1);
  const [offset, setOffset] = useState({ x: 0, y: 0 });
  const [level, setLevel] = useState(128);
  const [width, setWidth] = useState(256);
  const drag = useRef<{ x: number; y: number } | null>(null);

  const dicom = isDicom(doc);
  // The full image for pictures; for DICOM the server's rendered preview.
  const src = dicom
    ? `/api/v1/documents/${doc.id}/thumbnail`
    : `/api/v1/documents/${doc.id}/content`;
  const alt = doc.title ?? doc.filename;
  const zoomBy = (factor: number) => {
    setZoom((z) => Math.min(16, Math.max(0.25, z * factor)));
  };

  return (
    <Modal opened onClose={onClose} title={alt} size="xl" centered>
      <Stack>
        <Group justify="space-between">
          <Group gap={4}>
            <Tooltip label="Zoom in (+)">
              <ActionIcon
                variant="default"
                size="lg"
                aria-label="Zoom in"
                onClick={() => {
                  zoomBy(1.25);
                }}
              >
                <IconZoomIn size={18} />
              </ActionIcon>
            </Tooltip>
            <Tooltip label="Zoom out (-)">
              <ActionIcon
                variant="default"
                size="lg"
                aria-label="Zoom out"
                onClick={() => {
                  zoomBy(0.8);
                }}
              >
                <IconZoomOut size={18} />
              </ActionIcon>
            </Tooltip>
            <Tooltip label="Fit (0)">
              <ActionIcon
                variant="default"
                size="lg"
                aria-label="Reset zoom and position"
                onClick={() => {
                  setZoom(1);
                  setOffset({ x: 0, y: 0 });
                }}
              >
                <IconZoomReset size={18} />
              </ActionIcon>
            </Tooltip>
          </Group>
          <Text size="sm" c="dimmed" aria-live="polite">
            Zoom {Math.round(zoom * 100)}%
          </Text>
        </Group>
        <div
          className="viewer-stage"
          tabIndex={0}
          role="group"
          aria-label="Image. Use + and - to zoom, arrow keys to move, 0 to reset."
          data-testid="viewer-stage"
          onWheel={(event) => {
            zoomBy(event.deltaY < 0 ? 1.1 : 0.9);
          }}
          onPointerDown={(event) => {
            drag.current = { x: event.clientX - offset.x, y: event.clientY - offset.y };
            event.currentTarget.setPointerCapture(event.pointerId);
          }}
          onPointerMove={(event) => {
            if (drag.current)
              setOffset({ x: event.clientX - drag.current.x, y: event.clientY - drag.current.y });
          }}
          onPointerUp={() => {
            drag.current = null;
          }}
          onKeyDown={(event) => {
            const step = 40;
            const moves: Record<string, [number, number]> = {
              ArrowLeft: [step, 0],
              ArrowRight: [-step, 0],
              ArrowUp: [0, step],
              ArrowDown: [0, -step],
            };
            const move = moves[event.key];
            if (move) {
              event.preventDefault();
              setOffset((o) => ({ x: o.x + move[0], y: o.y + move[1] }));
            } else if (event.key === '+' || event.key === '=') zoomBy(1.25);
            else if (event.key === '-') zoomBy(0.8);
            else if (event.key === '0') {
              setZoom(1);
              setOffset({ x: 0, y: 0 });
            }
          }}
        >
          <div
            data-testid="viewer-transform"
            style={{
              transform: `translate(${offset.x}px, ${offset.y}px) scale(${zoom})`,
              transformOrigin: 'center',
              maxWidth: '100%',
              maxHeight: '100%',
            }}
          >
            {dicom ? (
              <WindowedCanvas src={src} level={level} width={width} alt={alt} />
            ) : (
              <img
                src={src}
                alt={alt}
                draggable={false}
                style={{ maxWidth: '100%', maxHeight: '60vh', display: 'block' }}
              />
            )}
          </div>
        </div>
        {dicom && (
          <Group grow align="flex-start">
            <div>
              <Text size="sm">Level {level}</Text>
              <Slider
                thumbLabel="Level"
                min={0}
                max={255}
                value={level}
                onChange={setLevel}
                label={null}
              />
            </div>
            <div>
              <Text size="sm">Window {width}</Text>
              <Slider
                thumbLabel="Window"
                min={1}
                max={512}
                value={width}
                onChange={setWidth}
                label={null}
              />
            </div>
          </Group>
        )}
        {dicom && (
          <Text size="xs" c="dimmed">
            Window and level act on the rendered preview (
            {doc.preview.status === 'ready' ? '8-bit' : 'not ready yet'}); download the DICOM file
            for diagnostic viewing.
          </Text>
        )}
      </Stack>
    </Modal>
  );
}
