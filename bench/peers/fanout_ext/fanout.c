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
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef struct {
    Py_ssize_t index;
    Py_ssize_t sent;
    int error;
} Shortfall;

static PyObject *send_all(PyObject *module, PyObject *args) {
    PyObject *fds_object;
    Py_buffer frame;
    if (!PyArg_ParseTuple(args, "Oy*", &fds_object, &frame)) {
        return NULL;
    }
    Py_buffer fds;
    if (PyObject_GetBuffer(fds_object, &fds, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&frame);
        return NULL;
    }
    if (fds.itemsize != sizeof(int) || fds.format == NULL || strcmp(fds.format, "i") != 0) {
        PyBuffer_Release(&fds);
        PyBuffer_Release(&frame);
        PyErr_SetString(PyExc_TypeError, "fds must be a buffer of C ints (array.array('i'))");
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
        if (sent == (ssize_t)length) {
            continue;
        }
        shortfalls[short_count].index = i;
        shortfalls[short_count].sent = sent < 0 ? 0 : sent;
        shortfalls[short_count].error = sent < 0 ? errno : 0;
        short_count++;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&fds);
    PyBuffer_Release(&frame);
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

static PyMethodDef methods[] = {
    {"send_all", send_all, METH_VARARGS,
     "send_all(fds, frame) -> [(index, sent, errno)] for the fds that did not take it all"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "fanout", "One frame to many sockets without the GIL.", -1, methods,
};

PyMODINIT_FUNC PyInit_fanout(void) { return PyModule_Create(&module); }
