// OpenBLAS's CBLAS interface. On Debian the header lives in the multiarch include
// directory, which the compiler searches by default.
#include <cblas.h>
