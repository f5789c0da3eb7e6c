/* workers: a thread pool for blocking work, with completions run on the event-loop thread.
 *
 * Nothing blocks the event loop: password hashing and other slow calls are submitted here and
 * the session resumes in the done callback, which always runs on the loop thread of the
 * event_base given to workers_new(). evthread_use_pthreads() must have been called before the
 * event_base was made. */
#ifndef TERN_WORKERS_H
#define TERN_WORKERS_H

struct event_base;
struct workers;

typedef void workers_fn(void *arg);

struct workers *workers_new(struct event_base *base, unsigned nthreads);
/* Stops the threads after the queued work has run; pending done callbacks are run first. */
void workers_free(struct workers **workers);

/* Runs work(arg) on a worker thread, then done(arg) on the loop thread. done may be NULL. */
void workers_submit(struct workers *workers, workers_fn *work, workers_fn *done, void *arg);
/* The number of threads, for callers that keep exactly that much work in flight. */
unsigned workers_threads(const struct workers *workers);
/* Thread-safe: schedules fn(arg) to run on the loop thread soon. */
void workers_post(struct workers *workers, workers_fn *fn, void *arg);

#endif
