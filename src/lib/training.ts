// Pairing picked or dropped files into training examples: an image `leaf.png` goes with a
// mask named `leaf.mask.png`, `leaf_mask.png`, `leaf-mask.png` or `leaf mask.png` (any
// image extension, any case). Pure: tested on its own.

const MASK_SUFFIX = /[._\- ]mask$/i;
const EXTENSION = /\.(png|jpe?g)$/i;

function stem(name: string): string {
  return name.replace(EXTENSION, "");
}

/** Whether a file name names a mask. */
export function isMask(name: string): boolean {
  return MASK_SUFFIX.test(stem(name));
}

export interface Paired<F> {
  /** Image + mask pairs, in the images' order. */
  pairs: Array<{ image: F; mask: F }>;
  /** Files still waiting for their partner (kept for the next pick). */
  waiting: F[];
  /** Files that are not PNG or JPEG images. */
  rejected: F[];
}

/** Pairs images with their masks by name. */
export function pairFiles<F extends { name: string }>(files: F[]): Paired<F> {
  const rejected = files.filter((f) => !EXTENSION.test(f.name));
  const images = files.filter((f) => EXTENSION.test(f.name) && !isMask(f.name));
  const masks = new Map<string, F>();
  for (const f of files) if (EXTENSION.test(f.name) && isMask(f.name)) masks.set(stem(f.name).replace(MASK_SUFFIX, "").toLowerCase(), f);
  const pairs: Array<{ image: F; mask: F }> = [];
  const waiting: F[] = [];
  for (const image of images) {
    const key = stem(image.name).toLowerCase();
    const mask = masks.get(key);
    if (mask) {
      pairs.push({ image, mask });
      masks.delete(key);
    } else waiting.push(image);
  }
  waiting.push(...masks.values());
  return { pairs, waiting, rejected };
}
