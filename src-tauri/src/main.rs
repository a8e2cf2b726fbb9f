//! Dormouse's executable: everything lives in the library (`dormouse_lib`). With a command
//! (`dormouse status`, `dormouse unload …`) it asks the running app and exits; without one
//! it starts the app.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // Before any thread starts: glibc then gives unloaded models' memory back.
    model_manager::memory::tune_allocator();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = dormouse_lib::control::cli::run_if_command(&args) {
        std::process::exit(code);
    }
    dormouse_lib::run();
}
