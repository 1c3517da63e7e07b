//! Rolling restart: one worker at a time, each drained, stopped, started and ready
//! again before the next is touched, so capacity never drops by more than one worker
//! and no request is sent to a worker that is not ready.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::output::Console;
use super::worker::SlotCommand;

/// Restarts the slots behind `slots` in order. Stops at the first worker that does not
/// come back (the rest keep running the old code, which still serves) and returns why.
pub async fn restart_all(
    slots: &[(u16, mpsc::UnboundedSender<SlotCommand>)],
    console: Arc<Console>,
    why: &str,
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
        let (reply, done) = oneshot::channel();
        tx.send(SlotCommand::Restart(reply))
            .map_err(|_| "the workers are stopping".to_owned())?;
        match done.await {
            Ok(Ok(())) => {}
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
