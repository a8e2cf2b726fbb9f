//! Build script: generates the Tauri context (config, capabilities, icons).

fn main() {
    tauri_build::build()
}
