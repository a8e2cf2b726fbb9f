//! macOS's sleep signal: NSWorkspace's `NSWorkspaceWillSleepNotification` (an observer may
//! delay the sleep for up to 30 s while it handles it) and `NSWorkspaceDidWakeNotification`,
//! observed on the workspace's notification center. The blocks run on the thread that posts
//! them (the main thread); the observers live as long as the process.

use std::ptr::NonNull;

use block2::RcBlock;
use objc2_app_kit::{
    NSWorkspace, NSWorkspaceDidWakeNotification, NSWorkspaceWillSleepNotification,
};
use objc2_foundation::NSNotification;

use super::SleepHooks;

/// Observes will-sleep and did-wake for the rest of the process.
pub fn watch(hooks: SleepHooks) -> Result<(), String> {
    let hooks: &'static SleepHooks = Box::leak(Box::new(hooks));
    let center = NSWorkspace::sharedWorkspace().notificationCenter();
    let will_sleep = RcBlock::new(move |_: NonNull<NSNotification>| (hooks.before_sleep)());
    let did_wake = RcBlock::new(move |_: NonNull<NSNotification>| (hooks.after_wake)());
    // SAFETY: the names are AppKit's constants; no object filter; no queue (the block runs
    // on the posting thread); the blocks only call the Send + Sync hooks.
    unsafe {
        let sleeping = center.addObserverForName_object_queue_usingBlock(
            Some(NSWorkspaceWillSleepNotification),
            None,
            None,
            &will_sleep,
        );
        let woken = center.addObserverForName_object_queue_usingBlock(
            Some(NSWorkspaceDidWakeNotification),
            None,
            None,
            &did_wake,
        );
        // The observers must outlive this call: they are kept for the process's life.
        std::mem::forget(sleeping);
        std::mem::forget(woken);
    }
    Ok(())
}
