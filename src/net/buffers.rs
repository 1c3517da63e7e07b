//! Per-thread free lists of I/O buffers.
//!
//! An idle keep-alive connection holds no buffer: a connection waits for readability
//! first, then takes a buffer here, and gives it back as soon as it has nothing pending.
//! That keeps memory per idle connection at the socket and the task, as nginx does.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Size of a head buffer: enough for nearly every request or response head plus the
/// first body bytes (nginx's `client_header_buffer_size` is 1 KiB); it grows, up to
/// the head limit, for the rare larger head and for buffered request bodies.
pub const HEAD_BUF: usize = 4 * 1024;
/// Size of a body buffer: large bodies move in chunks of this size.
pub const BODY_BUF: usize = 64 * 1024;
/// Head buffers (and recycled parsed heads) kept per thread; beyond that they are
/// freed. Every request in flight holds two or three of them, so the list must cover
/// the concurrency a thread sees: at 256 connections a list of 64 sent a quarter of
/// all instructions into the allocator (callgrind). 1,024 is at most 4 MiB a thread.
const MAX_FREE_HEADS: usize = 1024;
/// Body buffers kept per thread: one per response being relayed; at most 16 MiB.
const MAX_FREE_BODIES: usize = 256;

thread_local! {
    static FREE_HEAD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static FREE_BODY: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer borrowed from the thread's free list; it goes back there when dropped.
#[derive(Debug)]
pub struct Buf {
    data: Vec<u8>,
    class: usize,
}

impl Buf {
    /// A head-sized buffer (empty, capacity [`HEAD_BUF`]).
    pub fn head() -> Buf {
        Self::take(HEAD_BUF)
    }

    /// A body-sized buffer (empty, capacity [`BODY_BUF`]).
    pub fn body() -> Buf {
        Self::take(BODY_BUF)
    }

    fn take(class: usize) -> Buf {
        let list = if class == HEAD_BUF {
            &FREE_HEAD
        } else {
            &FREE_BODY
        };
        let data = list
            .with(|l| l.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(class));
        Buf { data, class }
    }

    /// Makes room for `total` bytes in all. A head buffer that is too small becomes a
    /// pooled body buffer (its bytes copied over, the head buffer given back) when
    /// that is large enough, so a request body of up to 64 KiB read behind its head
    /// costs no allocation; beyond that the buffer grows and is freed after use.
    pub fn make_room(&mut self, total: usize) {
        if total <= self.data.capacity() {
            return;
        }
        if self.class == HEAD_BUF && self.data.capacity() == HEAD_BUF && total <= BODY_BUF {
            let mut body = Buf::body();
            body.data.extend_from_slice(&self.data);
            std::mem::swap(self, &mut body);
            // `body` now holds the head buffer and returns it to its list on drop.
            return;
        }
        self.data.reserve(total - self.data.len());
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // A buffer that grew for an unusually large head is not kept: the free list
        // holds only standard sizes so memory stays predictable.
        if self.data.capacity() != self.class {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.clear();
        let (list, max) = if self.class == HEAD_BUF {
            (&FREE_HEAD, MAX_FREE_HEADS)
        } else {
            (&FREE_BODY, MAX_FREE_BODIES)
        };
        // try_with: during thread teardown the free list may already be gone.
        let _ = list.try_with(|l| {
            let mut l = l.borrow_mut();
            if l.len() < max {
                l.push(data);
            }
        });
    }
}

/// A value (a parsed head with its header vector) borrowed from a per-thread free
/// list and returned on drop, so a connection holds none while idle and the vectors
/// inside are not reallocated per request.
pub struct Recycled<T: Default + 'static> {
    item: Option<T>,
    home: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
}

impl<T: Default + 'static> Recycled<T> {
    /// Takes one from `home`, or makes a new one.
    pub fn take(home: &'static std::thread::LocalKey<RefCell<Vec<T>>>) -> Self {
        let item = home.with(|l| l.borrow_mut().pop()).unwrap_or_default();
        Recycled {
            item: Some(item),
            home,
        }
    }
}

impl<T: Default + 'static> Drop for Recycled<T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            let _ = self.home.try_with(|l| {
                let mut l = l.borrow_mut();
                if l.len() < MAX_FREE_HEADS {
                    l.push(item);
                }
            });
        }
    }
}

impl<T: Default + 'static> Deref for Recycled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Always Some until drop.
        self.item.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl<T: Default + 'static> DerefMut for Recycled<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().unwrap_or_else(|| unreachable!())
    }
}

thread_local! {
    /// Free request heads.
    pub static REQUEST_HEADS: RefCell<Vec<crate::http1::RequestHead>> = const { RefCell::new(Vec::new()) };
    /// Free response heads.
    pub static RESPONSE_HEADS: RefCell<Vec<crate::http1::ResponseHead>> = const { RefCell::new(Vec::new()) };
}

impl Deref for Buf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.data
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_cleared() {
        let ptr = {
            let mut b = Buf::head();
            b.extend_from_slice(b"hello");
            b.as_ptr()
        };
        let b = Buf::head();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr);
    }

    #[test]
    fn a_head_buffer_makes_room_by_becoming_a_body_buffer() {
        let mut b = Buf::head();
        b.extend_from_slice(b"head");
        b.make_room(HEAD_BUF + 1);
        assert_eq!(b.capacity(), BODY_BUF);
        assert_eq!(&b[..], b"head");
        drop(b);
        // Both went back to their lists: the next body buffer is the same allocation.
        assert_eq!(Buf::body().capacity(), BODY_BUF);
        let mut big = Buf::head();
        big.make_room(BODY_BUF + 1);
        assert!(big.capacity() > BODY_BUF);
    }

    #[test]
    fn grown_buffers_are_not_kept() {
        {
            let mut b = Buf::head();
            b.reserve(HEAD_BUF * 2);
        }
        let b = Buf::head();
        assert_eq!(b.capacity(), HEAD_BUF);
    }
}
