/*
 * bcryptprimitives.dll for Wine 8: the one export Go's Windows runtime needs.
 *
 * Go 1.22+ gets its random bytes from ProcessPrng in bcryptprimitives.dll,
 * which Wine 8 does not implement, so every Go program stops at start-up.
 * This stub implements it with RtlGenRandom (advapi32's SystemFunction036),
 * which Wine fills from the host's random source. It is test equipment for
 * scripts/wine-test.sh only: nothing ships it, and a real Windows has the
 * real DLL. The Go runtime loads it with LOAD_LIBRARY_SEARCH_SYSTEM32, so
 * the script puts it in the prefix's system32.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* ProcessPrng fills data with len random bytes; it never fails on Windows,
 * and here fails only if the host's source does. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
