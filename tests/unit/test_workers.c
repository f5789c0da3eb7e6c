/* Unit tests for workers: every job runs once on a worker, every done callback on the loop. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "lib/workers.h"

#define NJOBS 1000

struct job_state {
	pthread_t loop_thread;
	struct event_base *base;
	int worked[NJOBS];
	int done[NJOBS];
	int ndone;
	int wrong_thread;
};

struct job {
	struct job_state *st;
	int index;
};

static struct job jobs[NJOBS];

static void
job_work(void *arg)
{
	struct job *j = arg;

	__atomic_add_fetch(&j->st->worked[j->index], 1, __ATOMIC_SEQ_CST);
}

static void
job_done(void *arg)
{
	struct job *j = arg;

	if (!pthread_equal(pthread_self(), j->st->loop_thread))
		j->st->wrong_thread++;
	j->st->done[j->index]++;
	if (++j->st->ndone == NJOBS)
		event_base_loopexit(j->st->base, NULL);
}

static void
test_every_job_runs_once_and_completes_on_loop(void **state)
{
	static struct job_state st;
	struct workers *w;

	evthread_use_pthreads();
	st.base = event_base_new();
	st.loop_thread = pthread_self();
	w = workers_new(st.base, 4);
	for (int i = 0; i < NJOBS; i++) {
		jobs[i].st = &st;
		jobs[i].index = i;
		workers_submit(w, job_work, job_done, &jobs[i]);
	}
	event_base_dispatch(st.base);
	for (int i = 0; i < NJOBS; i++) {
		assert_int_equal(st.worked[i], 1);
		assert_int_equal(st.done[i], 1);
	}
	assert_int_equal(st.wrong_thread, 0);
	workers_free(&w);
	assert_null(w);
	event_base_free(st.base);
}

static int posted;

static void
post_fn(void *arg)
{
	posted++;
	if (posted == 3)
		event_base_loopexit(arg, NULL);
}

static void *
post_thread(void *arg)
{
	void **a = arg;

	workers_post(a[0], post_fn, a[1]);
	return NULL;
}

static void
test_post_from_other_threads_runs_on_loop(void **state)
{
	struct event_base *base;
	struct workers *w;
	pthread_t t[3];
	void *args[2];

	evthread_use_pthreads();
	base = event_base_new();
	w = workers_new(base, 1);
	args[0] = w;
	args[1] = base;
	posted = 0;
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, post_thread, args);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	event_base_dispatch(base);
	assert_int_equal(posted, 3);
	workers_free(&w);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_job_runs_once_and_completes_on_loop),
	    cmocka_unit_test(test_post_from_other_threads_runs_on_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
