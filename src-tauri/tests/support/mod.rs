//! A Dormouse app on Tauri's mock runtime (no display), with its own config and models
//! folders, real engines and real fixtures (from `scripts/fixtures.sh`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use dormouse_lib::paths::AppPaths;
use dormouse_lib::Launch;
use engines::segmentation::{weights::write_random_weights, SamSize};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    get_ipc_response, mock_builder, mock_context, noop_assets, MockRuntime, INVOKE_KEY,
};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

/// The fixture folder.
pub fn fixtures() -> PathBuf {
    std::env::var_os("DORMOUSE_FIXTURES").map_or_else(
        || {
            dirs::cache_dir()
                .expect("a cache folder")
                .join("dormouse")
                .join("fixtures")
        },
        PathBuf::from,
    )
}

/// A fixture file, which must exist.
pub fn fixture(name: &str) -> PathBuf {
    let path = fixtures().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/fixtures.sh`",
        path.display()
    );
    path
}

/// Random-weight MobileSAM weights of the real architecture (seed 7), made once and shared
/// by every test process (one 39 MB file in the temp folder, not one per process): written
/// under a per-process name and renamed into place, so a concurrent reader sees a whole file.
pub fn sam_tiny_weights() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("dormouse-app-tests");
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("mobile_sam-seed7.safetensors");
        if engines::segmentation::weights::inspect(&path).is_err() {
            let mine = dir.join(format!("mobile_sam-seed7.{}.partial", std::process::id()));
            write_random_weights(SamSize::Tiny, &mine, 7).expect("random SAM weights");
            std::fs::rename(&mine, &path).expect("weights into place");
        }
        path
    })
    .clone()
}

/// Puts `source` at `dest` without copying where the system allows it (a symbolic link on
/// Unix; a copy on Windows, where links need developer mode).
pub fn link(source: &Path, dest: &Path) {
    #[cfg(unix)]
    std::os::unix::fs::symlink(source, dest).expect("link");
    #[cfg(not(unix))]
    std::fs::copy(source, dest).map(drop).expect("copy");
}

/// A folder laid out as a fresh install: whisper base and Silero VAD linked in from the
/// fixtures; SAM tiny when `with_sam`.
pub fn install_models(models_dir: &Path, with_sam: bool) {
    std::fs::create_dir_all(models_dir).expect("models dir");
    for (fixture_name, name) in [
        ("ggml-base.bin", "ggml-base.bin"),
        ("silero_vad.onnx", "silero_vad.onnx"),
    ] {
        link(&fixture(fixture_name), &models_dir.join(name));
    }
    if with_sam {
        link(
            &sam_tiny_weights(),
            &models_dir.join("mobile_sam.safetensors"),
        );
    }
}

/// Calls `cmd` through the IPC of `window` (a clone of a [`TestApp`]'s window can call from
/// another thread, as a second window or a fast user would).
pub fn request_on(
    window: &WebviewWindow<MockRuntime>,
    cmd: &str,
    body: InvokeBody,
    headers: tauri::http::HeaderMap,
) -> Result<tauri::ipc::InvokeResponseBody, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body,
            headers,
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
}

/// A running app and its window.
pub struct TestApp {
    pub app: App<MockRuntime>,
    pub window: WebviewWindow<MockRuntime>,
    pub paths: AppPaths,
}

impl TestApp {
    /// Starts the app with its folders under `root` and these environment variables.
    pub fn start(root: &Path, env: &[(&str, &str)]) -> Self {
        let paths = AppPaths {
            config_dir: root.join("config"),
            models_dir: root.join("models"),
            log_dir: root.join("logs"),
            bundled_dir: None,
        };
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env_socket = env
            .iter()
            .find(|(k, _)| k == dormouse_lib::control::SOCKET_ENV)
            .map(|(_, v)| v.clone());
        let launch = Launch {
            paths: Some(paths.clone()),
            env: Arc::new(move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())),
            tray: false,
            logs: false,
            system_signals: false,
            control_socket: env_socket,
        };
        let app = dormouse_lib::with_commands(mock_builder())
            .build(mock_context(noop_assets()))
            .expect("the app builds");
        dormouse_lib::initialize(app.handle(), launch).expect("the app starts");
        let window = WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("a window");
        Self { app, window, paths }
    }

    fn request(
        &self,
        cmd: &str,
        body: InvokeBody,
        headers: tauri::http::HeaderMap,
    ) -> Result<tauri::ipc::InvokeResponseBody, Value> {
        request_on(&self.window, cmd, body, headers)
    }

    /// Calls a JSON command; `Err` holds the command's error object.
    pub fn invoke<T: DeserializeOwned>(&self, cmd: &str, args: Value) -> Result<T, Value> {
        self.request(cmd, InvokeBody::Json(args), Default::default())
            .map(|body| {
                body.deserialize::<T>()
                    .expect("the response has the declared type")
            })
    }

    /// Calls a JSON command that must succeed.
    pub fn ok<T: DeserializeOwned>(&self, cmd: &str, args: Value) -> T {
        self.invoke(cmd, args)
            .unwrap_or_else(|e| panic!("{cmd} failed: {e}"))
    }

    /// Calls a JSON command that must fail; returns the error's `kind` and the error.
    pub fn err(&self, cmd: &str, args: Value) -> (String, Value) {
        match self.invoke::<Value>(cmd, args) {
            Ok(v) => panic!("{cmd} should have failed, got {v}"),
            Err(e) => (e["kind"].as_str().unwrap_or("(no kind)").to_owned(), e),
        }
    }

    /// Calls a JSON command that answers with raw bytes.
    pub fn bytes(&self, cmd: &str, args: Value) -> Vec<u8> {
        match self.request(cmd, InvokeBody::Json(args), Default::default()) {
            Ok(tauri::ipc::InvokeResponseBody::Raw(bytes)) => bytes,
            Ok(tauri::ipc::InvokeResponseBody::Json(json)) => {
                panic!("{cmd} answered JSON, not bytes: {json}")
            }
            Err(e) => panic!("{cmd} failed: {e}"),
        }
    }

    /// Calls a raw-body command.
    pub fn invoke_raw(
        &self,
        cmd: &str,
        bytes: Vec<u8>,
        headers: &[(&'static str, &str)],
    ) -> Result<tauri::ipc::InvokeResponseBody, Value> {
        let mut map = tauri::http::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().expect("header value"));
        }
        self.request(cmd, InvokeBody::Raw(bytes), map)
    }

    /// Warms Whisper (`warm_model`) and waits, up to a minute, until it is loaded.
    pub fn warm_whisper(&self) {
        let _: Value = self.ok("warm_model", serde_json::json!({ "task": "transcription" }));
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.state("transcription") != "loaded" {
            assert!(std::time::Instant::now() < until, "whisper never loaded");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The state of a slot, from `get_model_status`.
    pub fn state(&self, slot: &str) -> String {
        self.model(slot)["state"]
            .as_str()
            .expect("state")
            .to_owned()
    }

    /// One model's status view.
    pub fn model(&self, slot: &str) -> Value {
        let status: Value = self.ok("get_model_status", serde_json::json!({}));
        status["models"]
            .as_array()
            .expect("models")
            .iter()
            .find(|m| m["slot"] == slot)
            .cloned()
            .unwrap_or_else(|| panic!("no {slot} in {status}"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        dormouse_lib::shut_down(self.app.handle());
    }
}

/// Writes a PNG of a bright square on a dark background.
pub fn write_square_png(path: &Path, size: u32) {
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        let inside = (size / 4..3 * size / 4).contains(&x) && (size / 4..3 * size / 4).contains(&y);
        if inside {
            image::Rgb([230, 200, 40])
        } else {
            image::Rgb([20, 30, 60])
        }
    });
    img.save(path).expect("png");
}
