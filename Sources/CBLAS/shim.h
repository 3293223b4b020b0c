// OpenBLAS's CBLAS interface. On Debian the header lives in the multiarch include
// directory, which the compiler searches by default.
#include <cblas.h>

// LAPACK's Cholesky factorization, bundled in OpenBLAS (Fortran calling convention).
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
