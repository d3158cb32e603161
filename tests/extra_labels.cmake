# tests/extra_labels.cmake: labels across the kinds of tests, each added
# beside a case's kind label (unit, integration, ...):
#   security         TLS, mutual TLS, tokens and roles, credential reloads
#                    and the resource limits (docs/SERVER.md §10), in the
#                    server and the clients, and the server parts they rest
#                    on (tokens, roles, the loopback rule)
#   fuzz-regression  the replay of every fuzz target's corpus and crashes
#
# gtest_discover_tests (PRE_TEST) defines a binary's cases only when ctest
# runs, listing them in <target>_TESTS; ctest includes this file after every
# binary's cases (tests/CMakeLists.txt), so it labels them then. In ctest,
# set_tests_properties adds LABELS to those a test has (`ctest -N -V` shows
# both). A binary not built has no cases here, and labels nothing.

# groove_add_label(LABEL REGEX TARGET...): LABEL on each case (Suite.Case)
# of the TARGETs whose name matches REGEX.
function(groove_add_label label regex)
  foreach(target IN LISTS ARGN)
    foreach(test IN LISTS ${target}_TESTS)
      if(test MATCHES "${regex}")
        set_tests_properties("${test}" PROPERTIES LABELS ${label})
      endif()
    endforeach()
  endforeach()
endfunction()

groove_add_label(security "." server_security_test client_security_test)
groove_add_label(security "^(AuthorizeTest|TokenTableTest|LoopbackTest)[.]"
                 server_parts_test)
groove_add_label(security "^GroovectlCliTest[.]ParsesSecurityFlags$"
                 groovectl_cli_test)
groove_add_label(fuzz-regression "." fuzz_regression_test)
