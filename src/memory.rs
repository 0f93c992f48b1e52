//! Memory the allocator keeps for reuse, handed back to the OS at the moments meshgate knows
//! a lot of it was just freed. mimalloc (the binary's global allocator) keeps a thread's
//! freed pages for that thread's next allocations and returns them only as that thread
//! allocates again: a thread that goes quiet after a burst keeps the burst's memory.

/// Every thread's freed pages, those of threads that ended included: after a snapshot
/// rebuild, whose parsed YAML is far larger than the snapshot it compiles to.
pub fn release_freed_by_all_threads() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; `force` also frees abandoned pages.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The calling thread's freed pages: on a worker whose connections just parked, having
/// freed what they were served with.
pub fn release_freed_by_this_thread() {
    // SAFETY: as above; without `force`, only the calling thread's heap is walked.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
