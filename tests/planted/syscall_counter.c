/* Not a bug: a syscall(2) that counts its calls by system call number and passes every
 * call through. It shows which of the kit's raw system calls an interposer sees (a spec's
 * *_syscall operations) and which it does not (the kit's own machinery: the watchdog's
 * timers). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>

#define NUMBERS 1024
static long calls[NUMBERS];

long syscall(long number, ...) {
    static long (*real)(long, ...);
    if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    va_list ap;
    va_start(ap, number);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    if (number >= 0 && number < NUMBERS) __atomic_add_fetch(&calls[number], 1, __ATOMIC_SEQ_CST);
    return real(number, a, b, c, d, e, f);
}

long planted_syscall_calls(long number) {
    return number >= 0 && number < NUMBERS ? __atomic_load_n(&calls[number], __ATOMIC_SEQ_CST) : -1;
}
