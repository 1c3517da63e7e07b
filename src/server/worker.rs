//! One worker thread: a current-thread tokio runtime running the accept loops of this
//! thread's listeners and every connection they accept.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::state::{ListenerCmd, Shared, StopMode, Worker};
use crate::config::Level;
use crate::net::ClientInfo;

/// The thread's body: runs until the server stops. `control` brings listeners added or
/// removed by a reload.
pub fn run(
    shared: Arc<Shared>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    mut control: mpsc::UnboundedReceiver<ListenerCmd>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::log::emit(
                Level::Alert,
                None,
                format_args!("worker runtime failed to start: {e}"),
            );
            return;
        }
    };
    // Connection tasks are spawned on this thread's scheduler directly (not a
    // LocalSet): a task woken by the I/O driver is then queued without waking the
    // runtime through its eventfd, one syscall less per wakeup batch.
    rt.block_on(async move {
        let worker = Worker::new(shared.clone());
        let mut stop = shared.stop_signal();
        let mut loops: HashMap<SocketAddr, JoinHandle<()>> = HashMap::new();
        for (addr, l) in listeners {
            start_accepting(&worker, &mut loops, addr, l);
        }
        // Idle upstream connections of removed peers, or idle past keepalive_timeout,
        // are closed by this sweep even when this thread serves no request.
        let mut pool_sweep = tokio::time::interval_at(
            tokio::time::Instant::now() + crate::upstream::pool::SWEEP_PERIOD,
            crate::upstream::pool::SWEEP_PERIOD,
        );
        pool_sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while *stop.borrow_and_update() == StopMode::Running {
            tokio::select! {
                r = stop.changed() => if r.is_err() { break },
                _ = pool_sweep.tick() => crate::upstream::pool::sweep(),
                cmd = control.recv() => match cmd {
                    Some(ListenerCmd::Add(addr, l)) => start_accepting(&worker, &mut loops, addr, l),
                    Some(ListenerCmd::Remove(addr)) => {
                        if let Some(h) = loops.remove(&addr) {
                            h.abort();
                        }
                    }
                    None => {}
                },
            }
        }
        for l in loops.values() {
            l.abort();
        }
        if *stop.borrow() == StopMode::Graceful {
            // Idle connections see the stop signal and close; requests in progress finish.
            while worker.active() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        crate::upstream::pool::clear();
    });
}

fn start_accepting(
    worker: &Arc<Worker>,
    loops: &mut HashMap<SocketAddr, JoinHandle<()>>,
    addr: SocketAddr,
    l: std::net::TcpListener,
) {
    match TcpListener::from_std(l) {
        Ok(l) => {
            let h = tokio::spawn(accept_loop(worker.clone(), l, worker.shared.stop_signal()));
            if let Some(old) = loops.insert(addr, h) {
                old.abort();
            }
        }
        Err(e) => crate::log::emit(
            Level::Alert,
            None,
            format_args!("listener {addr} setup failed: {e}"),
        ),
    }
}

async fn accept_loop(
    worker: Arc<Worker>,
    listener: TcpListener,
    mut stop: watch::Receiver<StopMode>,
) {
    let limit = worker
        .shared
        .runtime
        .load()
        .config
        .worker_connections
        .max(1);
    let mut warned = false;
    loop {
        if worker.active() >= limit {
            if !warned {
                crate::log::emit(
                    Level::Alert,
                    None,
                    format_args!("{limit} worker_connections are not enough"),
                );
                warned = true;
            }
            worker.freed.notified().await;
            continue;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                crate::log::emit(Level::Alert, None, format_args!("accept() failed ({e})"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let info = ClientInfo {
            id: worker.next_conn_id(),
            remote,
            local,
        };
        worker.active.fetch_add(1, Ordering::Relaxed);
        let w = worker.clone();
        tokio::spawn(async move {
            super::conn::serve(&w, stream.into(), info).await;
            w.active.fetch_sub(1, Ordering::Relaxed);
            w.freed.notify_one();
        });
    }
}
