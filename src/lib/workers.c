/* workers: a fixed pool of threads with a FIFO of jobs, and a completion queue drained on the
 * loop thread by one libevent event that worker threads activate. */
#include "lib/workers.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/log.h"
#include "lib/util.h"

struct workers_job {
	workers_fn *work;
	workers_fn *done;
	void *arg;
	struct workers_job *next;
};

struct workers_queue {
	struct workers_job *head, *tail;
};

struct workers {
	struct event_base *base;
	struct event *wake; /* persistent read event on wakefd: keeps the loop alive, too */
	int wakefd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct workers_queue jobs; /* waiting for a thread */
	struct workers_queue done; /* waiting for the loop thread */
	unsigned nthreads;
	pthread_t *threads;
	bool stopping;
};

static void
workers_queue_push(struct workers_queue *q, struct workers_job *job)
{
	job->next = NULL;
	if (q->tail != NULL)
		q->tail->next = job;
	else
		q->head = job;
	q->tail = job;
}

static struct workers_job *
workers_queue_pop(struct workers_queue *q)
{
	struct workers_job *job = q->head;

	if (job != NULL) {
		q->head = job->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	return job;
}

/* Runs on the loop thread: takes every finished job and runs its done callback. */
static void
workers_drain(evutil_socket_t fd, short what, void *arg)
{
	struct workers *w = arg;
	struct workers_queue batch;
	uint64_t value;

	if (fd >= 0)
		(void)!read(fd, &value, sizeof(value));
	pthread_mutex_lock(&w->lock);
	batch = w->done;
	w->done.head = w->done.tail = NULL;
	pthread_mutex_unlock(&w->lock);

	for (struct workers_job *job = workers_queue_pop(&batch); job != NULL;
	     job = workers_queue_pop(&batch)) {
		if (job->done != NULL)
			job->done(job->arg);
		free(job);
	}
}

/* Any thread: makes the loop run workers_drain soon. */
static void
workers_wake(struct workers *w)
{
	uint64_t one = 1;

	(void)!write(w->wakefd, &one, sizeof(one));
}

static void *
workers_thread(void *arg)
{
	struct workers *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct workers_job *job = workers_queue_pop(&w->jobs);
		if (job == NULL) {
			if (w->stopping)
				break;
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		pthread_mutex_unlock(&w->lock);
		job->work(job->arg);
		pthread_mutex_lock(&w->lock);
		workers_queue_push(&w->done, job);
		workers_wake(w);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct workers *
workers_new(struct event_base *base, unsigned nthreads)
{
	struct workers *w = xcalloc(1, sizeof(*w));

	w->base = base;
	w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->wakefd < 0)
		fatal("event=workers-init error=eventfd");
	w->wake = event_new(base, w->wakefd, EV_READ | EV_PERSIST, workers_drain, w);
	if (w->wake == NULL || event_add(w->wake, NULL) < 0)
		fatalx("event=workers-init error=event_new");
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->nthreads = nthreads ? nthreads : 1;
	w->threads = xcalloc(w->nthreads, sizeof(*w->threads));
	for (unsigned i = 0; i < w->nthreads; i++) {
		if (pthread_create(&w->threads[i], NULL, workers_thread, w) != 0)
			fatalx("event=workers-init error=pthread_create");
	}
	return w;
}

void
workers_free(struct workers **wp)
{
	struct workers *w = *wp;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	for (unsigned i = 0; i < w->nthreads; i++)
		pthread_join(w->threads[i], NULL);
	workers_drain(-1, 0, w);
	event_free(w->wake);
	close(w->wakefd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w->threads);
	free(w);
	*wp = NULL;
}

unsigned
workers_threads(const struct workers *w)
{
	return w->nthreads;
}

void
workers_submit(struct workers *w, workers_fn *work, workers_fn *done, void *arg)
{
	struct workers_job *job = xcalloc(1, sizeof(*job));

	job->work = work;
	job->done = done;
	job->arg = arg;
	pthread_mutex_lock(&w->lock);
	workers_queue_push(&w->jobs, job);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

void
workers_post(struct workers *w, workers_fn *fn, void *arg)
{
	struct workers_job *job = xcalloc(1, sizeof(*job));

	job->done = fn;
	job->arg = arg;
	pthread_mutex_lock(&w->lock);
	workers_queue_push(&w->done, job);
	pthread_mutex_unlock(&w->lock);
	workers_wake(w);
}
