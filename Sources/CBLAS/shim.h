// OpenBLAS's CBLAS interface. On Debian the header lives in the multiarch include
// directory, which the compiler searches by default.
#include <cblas.h>

// LAPACK's Cholesky factorization, bundled in OpenBLAS (Fortran calling convention).
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);

// LAPACK's symmetric eigensolver (divide and conquer), bundled in OpenBLAS.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info);

// LAPACK's symmetric eigensolver for a subset of eigenpairs (relatively robust
// representations), bundled in OpenBLAS.
void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a, const int *lda,
             const double *vl, const double *vu, const int *il, const int *iu, const double *abstol, int *m,
             double *w, double *z, const int *ldz, int *isuppz, double *work, const int *lwork,
             int *iwork, const int *liwork, int *info);
