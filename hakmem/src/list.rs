//! An intrusive doubly linked list of raw nodes (slabs, regions), so that the allocator's own
//! bookkeeping never allocates.

use core::marker::PhantomData;
use core::ptr::null_mut;

/// The two link fields a node embeds for one list it can be in.
#[derive(Debug)]
pub struct Links<T> {
    next: *mut T,
    prev: *mut T,
}

impl<T> Links<T> {
    /// Links of a node that is in no list.
    pub const fn new() -> Self {
        Links { next: null_mut(), prev: null_mut() }
    }
}

/// Which embedded [`Links`] a list uses.
pub trait Adapter<T> {
    /// The links of `node` for this list.
    ///
    /// # Safety
    /// `node` must point to a live `T`.
    unsafe fn links(node: *mut T) -> *mut Links<T>;
}

/// A list of `T` nodes threaded through the links `A` selects.
pub struct List<T, A> {
    head: *mut T,
    tail: *mut T,
    len: usize,
    _a: PhantomData<A>,
}

impl<T, A: Adapter<T>> List<T, A> {
    /// An empty list.
    pub const fn new() -> Self {
        List { head: null_mut(), tail: null_mut(), len: 0, _a: PhantomData }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// First node, or null.
    pub fn head(&self) -> *mut T {
        self.head
    }

    /// Node after `node`, or null.
    ///
    /// # Safety
    /// `node` must be in this list.
    pub unsafe fn next(&self, node: *mut T) -> *mut T {
        // SAFETY: caller guarantees node is live and linked here.
        unsafe { (*A::links(node)).next }
    }

    /// Appends `node`.
    ///
    /// # Safety
    /// `node` must be live and in no list that uses the same links.
    pub unsafe fn push_back(&mut self, node: *mut T) {
        // SAFETY: node and the current tail are live nodes we own the links of.
        unsafe {
            let l = A::links(node);
            (*l).next = null_mut();
            (*l).prev = self.tail;
            if self.tail.is_null() {
                self.head = node;
            } else {
                (*A::links(self.tail)).next = node;
            }
        }
        self.tail = node;
        self.len += 1;
    }

    /// Prepends `node`.
    ///
    /// # Safety
    /// As for [`List::push_back`].
    pub unsafe fn push_front(&mut self, node: *mut T) {
        // SAFETY: as in push_back.
        unsafe {
            let l = A::links(node);
            (*l).prev = null_mut();
            (*l).next = self.head;
            if self.head.is_null() {
                self.tail = node;
            } else {
                (*A::links(self.head)).prev = node;
            }
        }
        self.head = node;
        self.len += 1;
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    /// `node` must be in this list.
    pub unsafe fn remove(&mut self, node: *mut T) {
        // SAFETY: node and its neighbours are live members of this list.
        unsafe {
            let l = A::links(node);
            let (next, prev) = ((*l).next, (*l).prev);
            if prev.is_null() {
                debug_assert!(self.head == node);
                self.head = next;
            } else {
                (*A::links(prev)).next = next;
            }
            if next.is_null() {
                debug_assert!(self.tail == node);
                self.tail = prev;
            } else {
                (*A::links(next)).prev = prev;
            }
            (*l).next = null_mut();
            (*l).prev = null_mut();
        }
        self.len -= 1;
    }

    /// Unlinks and returns the first node, or null.
    ///
    /// # Safety
    /// Every node in the list must be live.
    pub unsafe fn pop_front(&mut self) -> *mut T {
        let h = self.head;
        if !h.is_null() {
            // SAFETY: h is the head of this list.
            unsafe { self.remove(h) };
        }
        h
    }

    /// Unlinks and returns the last node, or null.
    ///
    /// # Safety
    /// As for [`List::pop_front`].
    pub unsafe fn pop_back(&mut self) -> *mut T {
        let t = self.tail;
        if !t.is_null() {
            // SAFETY: t is the tail of this list.
            unsafe { self.remove(t) };
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Node {
        v: u32,
        links: Links<Node>,
    }
    struct ByLinks;
    impl Adapter<Node> for ByLinks {
        unsafe fn links(n: *mut Node) -> *mut Links<Node> {
            unsafe { &raw mut (*n).links }
        }
    }

    fn collect(l: &List<Node, ByLinks>) -> Vec<u32> {
        let mut out = vec![];
        let mut n = l.head();
        while !n.is_null() {
            unsafe {
                out.push((*n).v);
                n = l.next(n);
            }
        }
        out
    }

    #[test]
    fn push_remove_pop() {
        let mut nodes: Vec<Node> = (0..4).map(|v| Node { v, links: Links::new() }).collect();
        let p: Vec<*mut Node> = nodes.iter_mut().map(|n| n as *mut Node).collect();
        let mut l = List::<Node, ByLinks>::new();
        unsafe {
            l.push_back(p[1]);
            l.push_back(p[2]);
            l.push_front(p[0]);
            l.push_back(p[3]);
            assert_eq!(collect(&l), [0, 1, 2, 3]);
            l.remove(p[2]);
            l.remove(p[0]);
            assert_eq!(collect(&l), [1, 3]);
            l.remove(p[3]);
            assert_eq!(l.len(), 1);
            assert_eq!(l.pop_front(), p[1]);
            assert!(l.head().is_null());
            assert!(l.pop_front().is_null());
        }
    }
}
