/* fanout: one frame to many TCP sockets in one C call, without the GIL (a benchmark study).
 *
 *     send_all(fds, frame) -> [(index, sent, errno), ...]
 *
 * `fds` is any buffer of C ints (an array.array("i")), `frame` any bytes-like object. Each fd
 * gets one send(MSG_DONTWAIT | MSG_NOSIGNAL) of the whole frame, with the GIL released for the
 * whole loop, so the calling thread does no Python work per socket and any other Python thread
 * runs meanwhile. The answer lists only the sockets that did not take the whole frame: `sent`
 * bytes went (0 when none did) and `errno` says why (EAGAIN: the socket's buffer is full; 0: a
 * short write), so that the caller can queue the rest through its own (Python) write path and
 * close the sockets that failed. The caller must not close or reuse any of the fds during the
 * call: it is synchronous, so a single-threaded event loop owning the sockets guarantees that.
 *
 *     send_all_uring(fds, frame) -> the same
 *
 * Only when built with -DFANOUT_URING (liburing's headers present): the same sends as io_uring
 * IORING_OP_SEND requests, up to RING_ENTRIES per io_uring_enter instead of one system call per
 * socket. One ring per process, made on the first call; one thread may call it at a time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#ifdef FANOUT_URING
#include <liburing.h>
#define RING_ENTRIES 4096
#endif

typedef struct {
    Py_ssize_t index;
    Py_ssize_t sent;
    int error;
} Shortfall;

/* The arguments both functions take: the fds as C ints and the frame, as held buffers. */
static int parse(PyObject *args, Py_buffer *fds, Py_buffer *frame) {
    PyObject *fds_object;
    if (!PyArg_ParseTuple(args, "Oy*", &fds_object, frame)) {
        return -1;
    }
    if (PyObject_GetBuffer(fds_object, fds, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(frame);
        return -1;
    }
    if (fds->itemsize != sizeof(int) || fds->format == NULL || strcmp(fds->format, "i") != 0) {
        PyBuffer_Release(fds);
        PyBuffer_Release(frame);
        PyErr_SetString(PyExc_TypeError, "fds must be a buffer of C ints (array.array('i'))");
        return -1;
    }
    return 0;
}

/* [(index, sent, errno), ...] of the shortfalls; frees them. */
static PyObject *answer(Shortfall *shortfalls, Py_ssize_t short_count) {
    PyObject *result = PyList_New(short_count);
    for (Py_ssize_t k = 0; result != NULL && k < short_count; k++) {
        PyObject *item = Py_BuildValue("(nni)", shortfalls[k].index, shortfalls[k].sent,
                                       shortfalls[k].error);
        if (item == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, k, item);
    }
    PyMem_RawFree(shortfalls);
    return result;
}

static void record(Shortfall *shortfall, Py_ssize_t index, ssize_t sent, int error) {
    shortfall->index = index;
    shortfall->sent = sent < 0 ? 0 : sent;
    shortfall->error = sent < 0 ? error : 0;
}

static PyObject *send_all(PyObject *module, PyObject *args) {
    Py_buffer fds, frame;
    if (parse(args, &fds, &frame) < 0) {
        return NULL;
    }
    const int *fd = (const int *)fds.buf;
    Py_ssize_t count = fds.len / (Py_ssize_t)sizeof(int);
    const char *data = (const char *)frame.buf;
    size_t length = (size_t)frame.len;
    /* Worst case every socket falls short: one slot each, allocated before the loop. */
    Shortfall *shortfalls = PyMem_RawMalloc(sizeof(Shortfall) * (size_t)(count ? count : 1));
    if (shortfalls == NULL) {
        PyBuffer_Release(&fds);
        PyBuffer_Release(&frame);
        return PyErr_NoMemory();
    }
    Py_ssize_t short_count = 0;

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        ssize_t sent;
        do {
            sent = send(fd[i], data, length, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (sent < 0 && errno == EINTR);
        if (sent != (ssize_t)length) {
            record(&shortfalls[short_count++], i, sent, errno);
        }
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&fds);
    PyBuffer_Release(&frame);
    return answer(shortfalls, short_count);
}

#ifdef FANOUT_URING
static struct io_uring ring;
static int ring_ready = 0;

static PyObject *send_all_uring(PyObject *module, PyObject *args) {
    if (!ring_ready) {
        int error = io_uring_queue_init(RING_ENTRIES, &ring, 0);
        if (error < 0) {
            errno = -error;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        ring_ready = 1;
    }
    Py_buffer fds, frame;
    if (parse(args, &fds, &frame) < 0) {
        return NULL;
    }
    const int *fd = (const int *)fds.buf;
    Py_ssize_t count = fds.len / (Py_ssize_t)sizeof(int);
    Shortfall *shortfalls = PyMem_RawMalloc(sizeof(Shortfall) * (size_t)(count ? count : 1));
    if (shortfalls == NULL) {
        PyBuffer_Release(&fds);
        PyBuffer_Release(&frame);
        return PyErr_NoMemory();
    }
    Py_ssize_t short_count = 0;
    int failure = 0;

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t first = 0; first < count && !failure; first += RING_ENTRIES) {
        Py_ssize_t batch = count - first < RING_ENTRIES ? count - first : RING_ENTRIES;
        for (Py_ssize_t i = first; i < first + batch; i++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);  /* never NULL: ring emptied */
            io_uring_prep_send(sqe, fd[i], frame.buf, (size_t)frame.len,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
            io_uring_sqe_set_data64(sqe, (__u64)i);
        }
        /* MSG_DONTWAIT: each send completes (or fails with -EAGAIN) inside this one call. */
        int submitted = io_uring_submit_and_wait(&ring, (unsigned)batch);
        if (submitted < 0) {
            failure = -submitted;
            break;
        }
        for (Py_ssize_t done = 0; done < batch;) {
            struct io_uring_cqe *cqe;
            int error = io_uring_wait_cqe(&ring, &cqe);
            if (error < 0) {
                failure = -error;
                break;
            }
            if (cqe->res != (int)frame.len) {
                Py_ssize_t index = (Py_ssize_t)io_uring_cqe_get_data64(cqe);
                record(&shortfalls[short_count++], index, cqe->res, -cqe->res);
            }
            io_uring_cqe_seen(&ring, cqe);
            done++;
        }
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&fds);
    PyBuffer_Release(&frame);
    if (failure) {
        PyMem_RawFree(shortfalls);
        errno = failure;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return answer(shortfalls, short_count);
}
#endif

static PyMethodDef methods[] = {
    {"send_all", send_all, METH_VARARGS,
     "send_all(fds, frame) -> [(index, sent, errno)] for the fds that did not take it all"},
#ifdef FANOUT_URING
    {"send_all_uring", send_all_uring, METH_VARARGS,
     "send_all_uring(fds, frame) -> the same, the sends as io_uring requests"},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fanout", "One frame to many sockets without the GIL.", -1, methods,
};

PyMODINIT_FUNC PyInit_fanout(void) { return PyModule_Create(&module); }
