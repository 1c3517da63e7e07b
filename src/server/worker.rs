//! One worker thread: a current-thread tokio runtime running the accept loops of this
//! thread's listeners and every connection they accept.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::listener::Listener;
use super::state::{ListenerCmd, Shared, StopMode, Worker};
use crate::config::{Endpoint, Level};
use crate::net::{ClientAddr, ClientInfo, Stream};

/// The thread's body: runs until the server stops. `control` brings listeners added or
/// removed by a reload.
pub fn run(
    shared: Arc<Shared>,
    listeners: Vec<(Endpoint, Listener)>,
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
        let mut loops: HashMap<Endpoint, JoinHandle<()>> = HashMap::new();
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
    loops: &mut HashMap<Endpoint, JoinHandle<()>>,
    addr: Endpoint,
    l: Listener,
) {
    let registered = match l {
        Listener::Tcp(l) => TcpListener::from_std(l).map(Accept::Tcp),
        Listener::Unix(l) => UnixListener::from_std(l).map(|l| Accept::Unix(l, addr.clone())),
    };
    match registered {
        Ok(l) => {
            let h = tokio::spawn(accept_loop(
                worker.clone(),
                l,
                addr.clone(),
                worker.shared.stop_signal(),
            ));
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

/// A listener registered with this thread's runtime.
enum Accept {
    Tcp(TcpListener),
    /// With the path it listens on (the local address of its connections).
    Unix(UnixListener, Endpoint),
}

impl Accept {
    /// The next connection, as a stream and who it is.
    async fn accept(&self, id: impl FnOnce() -> u64) -> std::io::Result<(Stream, ClientInfo)> {
        match self {
            Accept::Tcp(l) => {
                let (stream, remote) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr()?;
                let info = ClientInfo::new(id(), ClientAddr::Inet(remote), Endpoint::Inet(local));
                Ok((stream.into(), info))
            }
            Accept::Unix(l, path) => {
                let (stream, _) = l.accept().await?;
                let info = ClientInfo::new(id(), ClientAddr::Unix, path.clone());
                Ok((stream.into(), info))
            }
        }
    }
}

/// Accepts connections on `listen` until the server stops or a reload removes it.
async fn accept_loop(
    worker: Arc<Worker>,
    listener: Accept,
    listen: Endpoint,
    mut stop: watch::Receiver<StopMode>,
) {
    let limit = worker
        .shared
        .runtime
        .load()
        .config
        .worker_connections
        .max(1);
    loop {
        let accepted = tokio::select! {
            r = listener.accept(|| worker.next_conn_id()) => r,
            _ = stop.changed() => return,
        };
        let (stream, info) = match accepted {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                crate::log::emit(Level::Alert, None, format_args!("accept() failed ({e})"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if worker.active() >= limit {
            // As nginx: the new connection is closed at once, the ones being served
            // go on (rather than leaving new clients waiting in the backlog).
            crate::log::emit(
                Level::Alert,
                None,
                format_args!("{limit} worker_connections are not enough"),
            );
            drop(stream);
            continue;
        }
        worker.active.fetch_add(1, Ordering::Relaxed);
        let conn = super::tls_handshake::Started {
            stream,
            info,
            first: None,
        };
        // The listening address goes with the connection only when a handshake or a
        // PROXY protocol header comes first: a plain connection's task stays smaller.
        let handshake = (!super::tls_handshake::is_plain(&worker, &listen, &conn.info))
            .then(|| Box::new(listen.clone()));
        tokio::spawn(super::conn::run(worker.clone(), handshake, conn));
    }
}
