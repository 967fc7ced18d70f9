//! The background thread that runs the model, so the UI never waits for it. The UI hands over the
//! whole list of explanations it wants, most urgent first (the unit under the cursor, the visible
//! units, then a little ahead); a new list replaces the old one, so scrolling away drops work that
//! is no longer needed. Results come back on a channel.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::explainer::{Explainer, Explanation, Target};
use crate::methods::Method;

/// One explanation the UI wants: a unit's text (the cache key, so equal texts share a result),
/// for one method and one class.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    pub text: String,
    pub method: Method,
    pub target: Target,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub request: Request,
    pub outcome: Result<Arc<Explanation>, String>,
}

/// Texts explained in one forward pass; small so urgent requests are not stuck behind a big batch.
const BATCH: usize = 4;

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    shutting_down: bool,
}

pub struct Worker {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    responses: Receiver<Response>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread.
    pub fn spawn(explainer: Arc<Explainer>) -> Self {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let (sender, responses) = channel();
        let thread_queue = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("tokenlens-explain".into())
            .spawn(move || serve(&explainer, &thread_queue, &sender))
            .ok();
        Worker {
            queue,
            responses,
            thread,
        }
    }

    /// Replaces the pending work with `requests` (most urgent first).
    pub fn submit(&self, requests: Vec<Request>) {
        let (lock, wakeup) = &*self.queue;
        let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
        queue.requests = requests.into();
        wakeup.notify_one();
    }

    /// Results that arrived since the last call.
    pub fn responses(&self) -> impl Iterator<Item = Response> + '_ {
        self.responses.try_iter()
    }

    /// Whether the thread is running (it is not if the OS refused to start it).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let (lock, wakeup) = &*self.queue;
        {
            let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
            queue.shutting_down = true;
            queue.requests.clear();
        }
        wakeup.notify_one();
        // Not joined: a batch in progress may take a while, and the process is about to exit.
        drop(self.thread.take());
    }
}

fn serve(explainer: &Explainer, queue: &(Mutex<Queue>, Condvar), sender: &Sender<Response>) {
    loop {
        let batch = {
            let (lock, wakeup) = queue;
            let mut queue = lock.lock().unwrap_or_else(|e| e.into_inner());
            while queue.requests.is_empty() && !queue.shutting_down {
                queue = wakeup.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            if queue.shutting_down {
                return;
            }
            take_batch(&mut queue.requests)
        };
        for response in explain(explainer, batch) {
            if sender.send(response).is_err() {
                return;
            }
        }
    }
}

/// The first request and up to `BATCH - 1` more of the same method and class from close behind it.
fn take_batch(requests: &mut VecDeque<Request>) -> Vec<Request> {
    let Some(first) = requests.pop_front() else {
        return Vec::new();
    };
    let mut batch = vec![first];
    let mut index = 0;
    while batch.len() < BATCH && index < requests.len().min(4 * BATCH) {
        if requests[index].method == batch[0].method && requests[index].target == batch[0].target {
            if let Some(request) = requests.remove(index) {
                batch.push(request);
            }
        } else {
            index += 1;
        }
    }
    batch
}

/// Explains a batch; when the batch fails, each text is retried alone so one bad text (too
/// long for memory, say) does not take the others down.
pub fn explain(explainer: &Explainer, batch: Vec<Request>) -> Vec<Response> {
    let Some(first) = batch.first() else {
        return Vec::new();
    };
    let (method, target) = (first.method, first.target);
    let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
    match explainer.explain_batch(&texts, &[method], target) {
        Ok(explanations) => batch
            .into_iter()
            .zip(explanations)
            .map(|(request, explanation)| Response {
                request,
                outcome: Ok(Arc::new(explanation)),
            })
            .collect(),
        Err(_) => batch
            .into_iter()
            .map(|request| {
                let outcome = explainer
                    .explain(&request.text, &[request.method], request.target)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                Response { request, outcome }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str, target: Target) -> Request {
        Request {
            text: text.into(),
            method: Method::CheferLrpAllLayers,
            target,
        }
    }

    #[test]
    fn batches_keep_priority_and_group_by_class() {
        let mut queue: VecDeque<Request> = [
            request("a", Target::Predicted),
            request("b", Target::Class(1)),
            request("c", Target::Predicted),
            request("d", Target::Predicted),
        ]
        .into();
        let batch = take_batch(&mut queue);
        let texts: Vec<&str> = batch.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["a", "c", "d"]);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].text, "b");
    }
}
