//! The app's side of the control socket: a thread that blocks on the socket, reads one
//! request per connection and answers from the slot owner. An unload asked here is the same
//! unload as the window's button and the tray's item, and the window toasts it the same way.
//! Nothing runs between connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{ListenerOptions, Stream};

use super::{Answer, Request, MAX_LINE};
use crate::managers::slots::SlotManager;
use crate::views::UnloadSummary;

/// The socket file to remove when the app quits (Unix); held in the app's state.
pub struct ControlSocket {
    name: String,
}

impl ControlSocket {
    /// The socket's name (a path on Unix, a pipe name on Windows).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Removes the socket file (on quit), so a command run after it says "not running"
    /// at once. A pipe on Windows goes with the process.
    pub fn close(&self) {
        #[cfg(unix)]
        if let Err(error) = std::fs::remove_file(&self.name) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(%error, socket = %self.name, "could not remove the control socket");
            }
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.close();
    }
}

/// Answers one request.
pub fn answer(slots: &SlotManager, request: Request, on_unload: &dyn Fn(&UnloadSummary)) -> Answer {
    match request {
        Request::Status => Answer::Status(slots.status()),
        Request::Unload { slot } => match slots.unload(slot) {
            Ok(summary) => {
                on_unload(&summary);
                Answer::Unloaded(summary)
            }
            Err(error) => Answer::Error(error.to_string()),
        },
        Request::DebugPressure { level } if cfg!(debug_assertions) => {
            tracing::info!(
                ?level,
                "memory pressure injected over the control socket (debug build)"
            );
            slots.report_memory_pressure(level);
            Answer::Done
        }
        Request::DebugPressure { .. } => {
            Answer::Error("debug requests are answered by debug builds only".into())
        }
    }
}

/// Reads one request line from `stream`, answers it and closes.
fn serve(stream: Stream, slots: &SlotManager, on_unload: &dyn Fn(&UnloadSummary)) {
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    let answer = match (&mut reader).take(MAX_LINE).read_line(&mut line) {
        Ok(0) => return, // connected and left
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Ok(request) => answer(slots, request, on_unload),
            Err(error) => Answer::Error(format!("unreadable request: {error}")),
        },
        Err(error) => Answer::Error(format!("unreadable request: {error}")),
    };
    let mut text = serde_json::to_string(&answer)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode the answer: {e}\"}}"));
    text.push('\n');
    let mut writer = &stream;
    if let Err(error) = writer
        .write_all(text.as_bytes())
        .and_then(|()| writer.flush())
    {
        tracing::debug!(%error, "a control client left before its answer");
    }
}

/// Binds the socket (owner-only) and starts answering on a thread of its own. A stale
/// socket file from an app that did not quit cleanly is replaced (one app per user runs:
/// the single-instance plugin sees to it).
pub fn start(
    name: String,
    slots: Arc<SlotManager>,
    on_unload: impl Fn(&UnloadSummary) + Send + 'static,
) -> std::io::Result<ControlSocket> {
    let listener = bind(&name)?;
    std::thread::Builder::new()
        .name("dormouse-control".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        // A client that never writes cannot hold the socket for long.
                        let _ = stream.set_recv_timeout(Some(Duration::from_secs(5)));
                        serve(stream, &slots, &on_unload);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "control socket: a connection failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    tracing::info!(socket = %name, "control socket listening");
    Ok(ControlSocket { name })
}

#[cfg(unix)]
fn bind(name: &str) -> std::io::Result<interprocess::local_socket::Listener> {
    use std::os::unix::fs::DirBuilderExt;

    use interprocess::local_socket::GenericFilePath;
    use interprocess::os::unix::local_socket::ListenerOptionsExt;

    let path = std::path::Path::new(name);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    ListenerOptions::new()
        .name(name.to_fs_name::<GenericFilePath>()?)
        .mode(0o600)
        .try_overwrite(true)
        .create_sync()
}

#[cfg(windows)]
fn bind(name: &str) -> std::io::Result<interprocess::local_socket::Listener> {
    use interprocess::local_socket::GenericNamespaced;
    use interprocess::os::windows::local_socket::ListenerOptionsExt;
    use interprocess::os::windows::security_descriptor::SecurityDescriptor;

    // Protected DACL with one entry: full access for the pipe's owner (this user).
    let sddl = widestring::U16CString::from_str("D:P(A;;GA;;;OW)")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let owner_only = SecurityDescriptor::deserialize(&sddl)?;
    ListenerOptions::new()
        .name(name.to_ns_name::<GenericNamespaced>()?)
        .security_descriptor(owner_only)
        .create_sync()
}
