//! Finding ONNX Runtime and making sure it is new enough *before* `ort` touches it: `ort`
//! 2.0.0-rc.12 (loaded dynamically) deadlocks when the library is missing or older than 1.24.
//!
//! Search order ([`search_dirs`]): `ORT_DYLIB_PATH`; the copy bundled with the app (next to
//! the executable, in its `lib/`, then the folders the app names with [`set_app_dirs`]: its
//! bundle's resources, then the models folder); Dormouse's folder in the user's cache
//! (`dirs::cache_dir()`); with the `test-support` feature only (tests, benches), the test
//! fixtures (`scripts/fixtures.sh`); then the system's library folders. The version is read through the library's own C entry
//! point (`OrtGetApiBase()->GetVersionString()`).

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::EngineError;

/// Oldest ONNX Runtime accepted.
pub const MIN_VERSION: (u32, u32) = (1, 24);

/// A usable ONNX Runtime library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// The shared library.
    pub path: PathBuf,
    /// Its version, e.g. `1.24.2`.
    pub version: String,
}

#[cfg(target_os = "linux")]
const LIB_PREFIX: &str = "libonnxruntime.so";
#[cfg(target_os = "macos")]
const LIB_PREFIX: &str = "libonnxruntime";
#[cfg(target_os = "windows")]
const LIB_PREFIX: &str = "onnxruntime.dll";
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
const LIB_PREFIX: &str = "libonnxruntime";

/// The folders the app keeps ONNX Runtime in, most preferred first (its bundled copy, then
/// the models folder). Set once at start-up, before anything loads a model.
static APP_DIRS: parking_lot::Mutex<Vec<PathBuf>> = parking_lot::Mutex::new(Vec::new());

/// Names the app's own ONNX Runtime folders, most preferred first. Takes effect for the
/// first [`ensure_runtime`] (the runtime is found once per process).
pub fn set_app_dirs(dirs: Vec<PathBuf>) {
    *APP_DIRS.lock() = dirs;
}

/// Where to look, in order: the explicit path, the executable's folder and its `lib/`, the
/// app's folders, Dormouse's cache folder (`<cache>/dormouse/onnxruntime`, and in debug
/// builds `<cache>/dormouse/fixtures`), then the system's library folders.
pub fn search_dirs(
    env_path: Option<PathBuf>,
    exe_dir: Option<PathBuf>,
    app_dirs: &[PathBuf],
    cache_dir: Option<PathBuf>,
) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(env_path);
    if let Some(exe) = exe_dir {
        dirs.push(exe.join("lib"));
        dirs.push(exe);
    }
    dirs.extend(app_dirs.iter().cloned());
    if let Some(cache) = cache_dir {
        dirs.push(cache.join("dormouse").join("onnxruntime"));
        // The test fixtures (scripts/fixtures.sh): only where the crate is built for tests,
        // never part of what a package finds.
        if cfg!(feature = "test-support") {
            dirs.push(cache.join("dormouse").join("fixtures"));
        }
    }
    #[cfg(unix)]
    for system in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/opt/onnxruntime/lib",
        "/opt/homebrew/lib",
    ] {
        dirs.push(PathBuf::from(system));
    }
    dirs
}

/// Candidate library files in `dir` (or `dir` itself if it is a file), newest name first.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    if dir.is_file() {
        return vec![dir.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIB_PREFIX) && !n.contains("providers"))
        })
        .collect();
    found.sort();
    found.reverse();
    found
}

/// Reads the version of the ONNX Runtime library at `path` without initialising `ort`.
pub fn library_version(path: &Path) -> Result<String, EngineError> {
    #[repr(C)]
    struct OrtApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const c_void,
        get_version_string: unsafe extern "C" fn() -> *const c_char,
    }
    let unusable = |reason: String| EngineError::InvalidWeights {
        path: path.to_path_buf(),
        expected: "ONNX Runtime library".into(),
        reason,
    };
    // SAFETY: loading a shared library runs its initialisers; the candidates are ONNX
    // Runtime libraries the user or the app installed. The symbol is called with the
    // signature ONNX Runtime's C API declares, and the library stays loaded while the
    // returned string is copied.
    unsafe {
        let library = libloading::Library::new(path)
            .map_err(|e| unusable(format!("could not be loaded: {e}")))?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const OrtApiBase> = library
            .get(b"OrtGetApiBase\0")
            .map_err(|_| unusable("it has no OrtGetApiBase: not ONNX Runtime".into()))?;
        let base = get_base();
        if base.is_null() {
            return Err(unusable("OrtGetApiBase returned nothing".into()));
        }
        let version = ((*base).get_version_string)();
        if version.is_null() {
            return Err(unusable("it reports no version".into()));
        }
        Ok(CStr::from_ptr(version).to_string_lossy().into_owned())
    }
}

fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The first library in `dirs` that loads and is at least [`MIN_VERSION`]; the error says what
/// was found, where, and what to install.
pub fn find_runtime(dirs: &[PathBuf]) -> Result<RuntimeInfo, EngineError> {
    let mut rejected = Vec::new();
    for dir in dirs {
        for path in candidates(dir) {
            match library_version(&path) {
                Ok(version) if parse_version(&version).is_some_and(|v| v >= MIN_VERSION) => {
                    return Ok(RuntimeInfo { path, version });
                }
                Ok(version) => rejected.push(format!("{} is version {version}", path.display())),
                Err(e) => rejected.push(e.to_string()),
            }
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let found = if rejected.is_empty() {
        "none was found".to_owned()
    } else {
        format!("found but unusable: {}", rejected.join("; "))
    };
    Err(EngineError::Undecodable {
        what: "ONNX Runtime".into(),
        reason: format!(
            "version {}.{} or newer is needed and {found}. Dormouse's packages bundle it: reinstall \
             Dormouse, or install it (e.g. `pip install onnxruntime==1.24.2`) and set ORT_DYLIB_PATH to its library \
             (in site-packages/onnxruntime/capi), or put the library in the models folder's onnxruntime/. Searched: {}",
            MIN_VERSION.0,
            MIN_VERSION.1,
            searched.join(", ")
        ),
    })
}

/// Finds, checks and initialises ONNX Runtime once per process; later calls return the
/// same answer.
pub fn ensure_runtime() -> Result<&'static RuntimeInfo, EngineError> {
    static RUNTIME: OnceLock<Result<RuntimeInfo, String>> = OnceLock::new();
    let result = RUNTIME.get_or_init(|| {
        let dirs = search_dirs(
            std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf)),
            &APP_DIRS.lock(),
            dirs::cache_dir(),
        );
        let info = find_runtime(&dirs).map_err(|e| e.to_string())?;
        ort::init_from(&info.path)
            .map_err(|e| {
                format!(
                    "ONNX Runtime at {} failed to initialise: {e}",
                    info.path.display()
                )
            })?
            .with_name("dormouse")
            .commit();
        tracing::info!(path = %info.path.display(), version = %info.version, "ONNX Runtime ready");
        Ok(info)
    });
    result.as_ref().map_err(|reason| EngineError::Undecodable {
        what: "ONNX Runtime".into(),
        reason: reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("1.24.2"), Some((1, 24)));
        assert!(parse_version("1.16.3").is_some_and(|v| v < MIN_VERSION));
        assert!(parse_version("2.0").is_some_and(|v| v >= MIN_VERSION));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn the_explicit_path_then_the_bundled_copy_then_the_models_folder_are_searched() {
        let dirs = search_dirs(
            Some("/x/lib.so".into()),
            Some("/app".into()),
            &["/res/onnxruntime".into(), "/models/onnxruntime".into()],
            Some("/cache".into()),
        );
        assert_eq!(
            dirs[..5],
            [
                PathBuf::from("/x/lib.so"),
                PathBuf::from("/app/lib"),
                PathBuf::from("/app"),
                PathBuf::from("/res/onnxruntime"),
                PathBuf::from("/models/onnxruntime"),
            ]
        );
        assert_eq!(dirs[5], PathBuf::from("/cache/dormouse/onnxruntime"));
        // The test fixtures are searched where the crate is built for tests, never otherwise.
        assert_eq!(
            dirs.contains(&PathBuf::from("/cache/dormouse/fixtures")),
            cfg!(feature = "test-support")
        );
    }

    #[test]
    fn nothing_found_names_what_to_install() {
        let dir = tempfile::tempdir().expect("temp");
        let err = find_runtime(&[dir.path().to_path_buf()]).expect_err("empty folder");
        let text = err.to_string();
        assert!(text.contains("none was found"), "{text}");
        assert!(
            text.contains("ORT_DYLIB_PATH") && text.contains("onnxruntime==1.24.2"),
            "{text}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_library_is_rejected_with_its_reason() {
        let dir = tempfile::tempdir().expect("temp");
        std::fs::write(
            dir.path().join(format!("{LIB_PREFIX}.1.30.0")),
            b"not an ELF file",
        )
        .expect("write");
        let err = find_runtime(&[dir.path().to_path_buf()]).expect_err("not a library");
        assert!(err.to_string().contains("could not be loaded"), "{err}");
    }
}
