//! Rolling restart: one worker at a time, each drained, stopped, started and ready
//! again before the next is touched, so capacity never drops by more than one worker
//! and no request is sent to a worker that is not ready.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::server::RollingReport;

use super::output::Console;
use super::worker::SlotCommand;

/// Where a rolling restart reports its progress (read by `GET /workers`, `/status`
/// and the dashboard): the running one, or the last one.
pub type Progress = Arc<Mutex<Option<RollingReport>>>;

/// Restarts the slots behind `slots` in order, reporting to `progress`. Stops at the
/// first worker that does not come back (the rest keep running the old code, which
/// still serves) and returns why.
pub async fn restart_all(
    slots: &[(u16, mpsc::UnboundedSender<SlotCommand>)],
    console: Arc<Console>,
    why: &str,
    progress: &Progress,
) -> Result<usize, String> {
    *progress.lock().unwrap_or_else(PoisonError::into_inner) = Some(RollingReport {
        done: 0,
        total: slots.len(),
        current: None,
        why: why.to_owned(),
        outcome: None,
        ok: None,
    });
    let result = restart_each(slots, &console, why, progress).await;
    report(progress, |r| {
        r.current = None;
        r.ok = Some(result.is_ok());
        r.outcome = Some(match &result {
            Ok(n) => format!("{n} workers restarted"),
            Err(e) => e.clone(),
        });
    });
    result
}

/// Applies `f` to the progress of the running restart.
fn report(progress: &Progress, f: impl FnOnce(&mut RollingReport)) {
    let mut p = progress.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(r) = p.as_mut() {
        f(r);
    }
}

async fn restart_each(
    slots: &[(u16, mpsc::UnboundedSender<SlotCommand>)],
    console: &Console,
    why: &str,
    progress: &Progress,
) -> Result<usize, String> {
    if slots.len() == 1 {
        console.say(
            "rolling restart with a single worker: requests fail while it restarts (use -w 2 or more)",
        );
    }
    console.say(&format!(
        "rolling restart of {} workers ({why})",
        slots.len()
    ));
    for (n, (port, tx)) in slots.iter().enumerate() {
        console.say(&format!(
            "rolling restart {}/{}: worker {port}: draining",
            n + 1,
            slots.len()
        ));
        report(progress, |r| r.current = Some(*port));
        let (reply, done) = oneshot::channel();
        tx.send(SlotCommand::Restart(reply))
            .map_err(|_| "the workers are stopping".to_owned())?;
        match done.await {
            Ok(Ok(())) => report(progress, |r| r.done = n + 1),
            Ok(Err(e)) => {
                let msg = format!(
                    "rolling restart stopped at worker {port}: {e}; the workers not yet restarted keep running"
                );
                console.say(&msg);
                return Err(msg);
            }
            Err(_) => return Err("the workers are stopping".to_owned()),
        }
    }
    console.say(&format!(
        "rolling restart done: {} workers restarted",
        slots.len()
    ));
    Ok(slots.len())
}
