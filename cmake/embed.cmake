# Writes IN as a C byte array returned by tide_api_header() into OUT.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE ${OUT} "/* generated from runtime/tide_api.h by cmake/embed.cmake */\n"
  "static const char header[] = {${bytes} 0x00};\n"
  "const char *tide_api_header(void) { return header; }\n")
