//! Dormouse's executable: everything lives in the library (`dormouse_lib`).
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    dormouse_lib::run();
}
