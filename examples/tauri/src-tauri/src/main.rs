// Prevents an extra console window on Windows in release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

/// This app's process id, passed to the sidecar as `--parent-pid` so that it exits when
/// the app does, however the app ends (a Tauri `child.kill()` of a one-file binary may
/// stop only its bootloader).
#[tauri::command]
fn app_pid() -> u32 {
    std::process::id()
}

fn main() {
    tauri::Builder::default()
        .plugin(tauri_plugin_shell::init())
        .invoke_handler(tauri::generate_handler![app_pid])
        .run(tauri::generate_context!())
        .expect("error while running the Tauri application");
}
