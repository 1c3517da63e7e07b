//! Backend processes for `ferrolb up` (arrives with its own issue).
