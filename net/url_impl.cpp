// The one translation unit that compiles Boost.URL (Debian ships it without a built library).
#include <boost/url/src.hpp>
