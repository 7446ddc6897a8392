//! Group commit: writers that arrive together share one transaction, so a
//! burst of N writes costs one durable commit (one fsync) instead of N.
//!
//! There is no background task. A writer queues its item, then waits for
//! its result or its turn at the writer lock, whichever comes first;
//! whoever gets the turn takes everything queued so far and writes it in
//! one transaction. By the time a writer gets its turn, its item has either
//! been written by an earlier turn (its result is already waiting) or is
//! still in the queue for it to take.
//!
//! The transaction runs in a spawned task that owns the turn, so a caller
//! that is cancelled (a client hanging up) neither loses the other
//! writers' items nor lets the next batch start before this one is done.

use std::future::Future;
use std::sync::{Arc, Mutex};

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::oneshot;

use super::storage;
use crate::Error;

/// Writes a batch of items in one transaction.
pub trait BatchWriter: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Output: Send + 'static;

    /// Writes `items` in one transaction. `Err` means nothing was written
    /// (the transaction rolled back); `Ok` holds one outcome per item, in
    /// order, where an item's own failure wrote nothing for that item.
    fn write(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Result<Self::Output, Error>>, Error>> + Send;
}

type Waiting<W> = (
    <W as BatchWriter>::Item,
    oneshot::Sender<Result<<W as BatchWriter>::Output, Error>>,
);

pub struct GroupCommit<W: BatchWriter> {
    writer: Arc<W>,
    queue: Arc<Mutex<Vec<Waiting<W>>>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl<W: BatchWriter> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl<W: BatchWriter> GroupCommit<W> {
    pub fn new(writer: W) -> Self {
        Self {
            writer: Arc::new(writer),
            queue: Arc::default(),
            turn: Arc::default(),
        }
    }

    /// The writer, for tests that look at what it holds.
    #[cfg(test)]
    pub(crate) fn writer(&self) -> &W {
        &self.writer
    }

    /// Writes `item`, together with whatever other writers queued meanwhile.
    pub async fn submit(&self, item: W::Item) -> Result<W::Output, Error> {
        let (done, mut outcome) = oneshot::channel();
        lock(&self.queue).push((item, done));
        // A writer whose item an earlier turn took leaves as soon as its
        // result is in, without queueing through the turn: the next batch
        // starts the moment the previous one ends.
        let turn = tokio::select! {
            biased;
            result = &mut outcome => return result.unwrap_or_else(|_| Err(lost())),
            turn = self.turn.clone().lock_owned() => turn,
        };
        match outcome.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = std::mem::take(&mut *lock(&self.queue));
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let _turn = turn;
            let (items, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            for (done, result) in waiting.into_iter().zip(write_all(&*writer, items).await) {
                let _ = done.send(result);
            }
        });
        outcome.await.unwrap_or_else(|_| Err(lost()))
    }
}

/// One connection kept by a batch writer: no pool round trips per batch,
/// and SQLite keeps its page cache, which it drops whenever another
/// connection wrote. Detached from the pool, so that closing the pool does
/// not wait for it; replaced after any failure.
pub struct HeldConnection {
    pool: AnyPool,
    connection: tokio::sync::Mutex<Option<AnyConnection>>,
}

/// The held connection, for one batch.
pub struct HeldGuard<'a>(tokio::sync::MutexGuard<'a, Option<AnyConnection>>);

impl HeldConnection {
    pub fn new(pool: AnyPool) -> Self {
        Self {
            pool,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn lock(&self) -> Result<HeldGuard<'_>, Error> {
        let mut held = self.connection.lock().await;
        if held.is_none() {
            *held = Some(self.pool.acquire().await.map_err(storage)?.detach());
        }
        Ok(HeldGuard(held))
    }
}

impl HeldGuard<'_> {
    /// The connection; [`HeldConnection::lock`] put one in the guard.
    pub fn connection(&mut self) -> Result<&mut AnyConnection, Error> {
        self.0
            .as_mut()
            .ok_or_else(|| Error::Storage("the held connection is missing".into()))
    }

    /// Drops the connection after a failure (a transaction left open rolls
    /// back as it closes); the next batch opens another.
    pub fn discard(mut self) {
        *self.0 = None;
    }
}

/// One transaction for all items; if it fails, one transaction per item,
/// so that one bad item (a duplicate key) does not fail its neighbours.
async fn write_all<W: BatchWriter>(
    writer: &W,
    items: Vec<W::Item>,
) -> Vec<Result<W::Output, Error>> {
    let batch_error = match writer.write(&items).await {
        Ok(outcomes) if outcomes.len() == items.len() => return outcomes,
        Ok(_) => Error::Storage("a batch write returned the wrong number of outcomes".into()),
        Err(e) => e,
    };
    if items.len() == 1 {
        return vec![Err(batch_error)];
    }
    let mut outcomes = Vec::with_capacity(items.len());
    for item in &items {
        let alone = writer.write(std::slice::from_ref(item)).await;
        outcomes.push(match alone {
            Ok(mut one) if one.len() == 1 => one.remove(0),
            Ok(_) => Err(Error::Storage(
                "a batch write returned the wrong number of outcomes".into(),
            )),
            Err(e) => Err(e),
        });
    }
    outcomes
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The queue holds plain data; a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn lost() -> Error {
    Error::Storage("the batch write ended without an outcome".into())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Records every batch; a batch holding 13 fails as a whole, the way a
    /// duplicate key aborts a PostgreSQL transaction; 7 fails on its own.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<u32>>>,
        transactions: AtomicUsize,
    }

    impl BatchWriter for Arc<Recorder> {
        type Item = u32;
        type Output = u32;

        async fn write(&self, items: &[u32]) -> Result<Vec<Result<u32, Error>>, Error> {
            self.transactions.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            if items.contains(&13) {
                return Err(Error::DuplicateSerial("13".into()));
            }
            lock(&self.batches).push(items.to_vec());
            Ok(items
                .iter()
                .map(|&n| match n {
                    7 => Err(Error::Conflict("seven".into())),
                    n => Ok(n * 2),
                })
                .collect())
        }
    }

    async fn submit_all(
        recorder: &Arc<Recorder>,
        items: std::ops::Range<u32>,
    ) -> Vec<Result<u32, Error>> {
        let commit = Arc::new(GroupCommit::new(recorder.clone()));
        let tasks: Vec<_> = items
            .map(|n| {
                let commit = commit.clone();
                tokio::spawn(async move { commit.submit(n).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        outcomes
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_transactions() {
        let recorder = Arc::new(Recorder::default());
        let outcomes = submit_all(&recorder, 20..60).await;
        for (n, outcome) in (20u32..).zip(outcomes) {
            assert_eq!(outcome.unwrap(), n * 2);
        }
        let mut written: Vec<u32> = lock(&recorder.batches).iter().flatten().copied().collect();
        written.sort();
        assert_eq!(written, (20..60).collect::<Vec<_>>(), "each written once");
        let transactions = recorder.transactions.load(Ordering::SeqCst);
        assert!(
            transactions < 10,
            "40 concurrent writers took {transactions} transactions"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_item_fails_alone() {
        let recorder = Arc::new(Recorder::default());
        let outcomes = submit_all(&recorder, 0..20).await;
        for (n, outcome) in (0u32..).zip(&outcomes) {
            match (n, outcome) {
                (7, Err(Error::Conflict(_))) | (13, Err(Error::DuplicateSerial(_))) => {}
                (n, Ok(doubled)) if n != 7 && n != 13 => assert_eq!(*doubled, n * 2),
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        let mut written: Vec<u32> = lock(&recorder.batches).iter().flatten().copied().collect();
        written.sort();
        let expected: Vec<u32> = (0..20).filter(|&n| n != 13).collect();
        assert_eq!(
            written, expected,
            "every item written exactly once, 13 never"
        );
    }

    #[tokio::test]
    async fn a_writer_cancelled_mid_transaction_still_commits_its_batch() {
        let recorder = Arc::new(Recorder::default());
        let commit = Arc::new(GroupCommit::new(recorder.clone()));
        let first = tokio::spawn({
            let commit = commit.clone();
            async move { commit.submit(1).await }
        });
        // The transaction takes 5 ms; hang up in the middle of it.
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(recorder.transactions.load(Ordering::SeqCst), 1);
        first.abort();
        assert_eq!(commit.submit(2).await.unwrap(), 4);
        let written: Vec<u32> = lock(&recorder.batches).iter().flatten().copied().collect();
        assert_eq!(
            written,
            [1, 2],
            "the cancelled writer's batch committed first"
        );
    }
}
