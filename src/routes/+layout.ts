// A single-page app inside Tauri: no server rendering.
export const ssr = false;
export const prerender = false;
