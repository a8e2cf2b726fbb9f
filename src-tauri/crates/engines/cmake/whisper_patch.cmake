# Dormouse's patch to whisper.cpp, applied while whisper-rs-sys's build configures it.
#
# .cargo/config.toml names this file in CMAKE_PROJECT_INCLUDE, which whisper-rs-sys hands to
# CMake with every other CMAKE_* variable; CMake includes it after each project() call. At the
# end of the top-level CMakeLists (once the `whisper` library target exists) it compiles a
# patched copy of src/whisper.cpp, written into the build directory, in place of the original.
# The crate's sources are left untouched. A replacement whose text is not found exactly once
# stops the build with the reason: a whisper-rs-sys update must revisit this patch.
#
# The patch: one encoder pass when the language is detected. whisper_full runs the encoder
# for the first window to detect the language (whisper_lang_auto_detect_with_state), then
# runs it again on the same window, from the same log-mel frames, before decoding. The second
# pass is skipped; the decoder reads the cross-attention keys and values the first one left in
# the state (the detection's one decoder step touches only the self-attention cache, which the
# decoding loop clears). Only when that pass saw the same audio context: whisper_full sets this
# call's audio_ctx after the detection, which runs with the previous call's. Beckett with
# detection: 4.20 s → 2.24 s, the same words (docs/benchmarks.md, "Whisper's levers").

if(CMAKE_VERSION VERSION_LESS 3.21) # cmake_language(DEFER), file(COPY_FILE)
    message(FATAL_ERROR "Dormouse's whisper.cpp patch needs CMake 3.21 or newer (found ${CMAKE_VERSION})")
endif()

function(dormouse_replace_once text_var old new)
    string(FIND "${${text_var}}" "${old}" first)
    string(FIND "${${text_var}}" "${old}" last REVERSE)
    if(first EQUAL -1)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: text not found (has whisper-rs-sys changed?):\n${old}")
    endif()
    if(NOT first EQUAL last)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: text found more than once:\n${old}")
    endif()
    string(REPLACE "${old}" "${new}" replaced "${${text_var}}")
    set(${text_var} "${replaced}" PARENT_SCOPE)
endfunction()

function(dormouse_patch_whisper)
    if(NOT TARGET whisper)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: no `whisper` target to patch")
    endif()
    get_target_property(source_dir whisper SOURCE_DIR)
    file(READ "${source_dir}/whisper.cpp" text)

    dormouse_replace_once(text
        "    // auto-detect language if not specified\n"
        "    // Dormouse: whether the encoder's output in the state is that of the first window (seek 0),\n    // left by the language detection below, and the audio context it was encoded with (the\n    // detection runs before this call's audio_ctx is set).\n    bool dormouse_encoded_seek0 = false;\n    int dormouse_encoded_audio_ctx = 0;\n\n    // auto-detect language if not specified\n")
    dormouse_replace_once(text
        "        state->lang_id = lang_id;\n        params.language = whisper_lang_str(lang_id);\n"
        "        state->lang_id = lang_id;\n        params.language = whisper_lang_str(lang_id);\n        dormouse_encoded_seek0 = true;\n        dormouse_encoded_audio_ctx = state->exp_n_audio_ctx;\n")
    dormouse_replace_once(text
        "        if (!whisper_encode_internal(*ctx, *state, seek, params.n_threads, params.abort_callback, params.abort_callback_user_data)) {\n"
        "        // Dormouse: the detection already encoded this window.\n        const bool dormouse_reuse = dormouse_encoded_seek0 && seek == 0\n            && state->exp_n_audio_ctx == dormouse_encoded_audio_ctx;\n        dormouse_encoded_seek0 = false;\n        if (dormouse_reuse) {\n            WHISPER_LOG_INFO(\"%s: dormouse: reusing the language detection's encoder pass\\n\", __func__);\n        }\n        if (!dormouse_reuse && !whisper_encode_internal(*ctx, *state, seek, params.n_threads, params.abort_callback, params.abort_callback_user_data)) {\n")

    set(patched "${CMAKE_BINARY_DIR}/dormouse/whisper.cpp")
    file(WRITE "${patched}.new" "${text}")
    # Rewrite only when the text changed, so an unchanged patch does not rebuild the library.
    file(COPY_FILE "${patched}.new" "${patched}" ONLY_IF_DIFFERENT)
    get_target_property(sources whisper SOURCES)
    list(TRANSFORM sources REPLACE "^whisper\\.cpp$" "${patched}")
    if(NOT "${patched}" IN_LIST sources)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: `whisper` has no source whisper.cpp: ${sources}")
    endif()
    set_target_properties(whisper PROPERTIES SOURCES "${sources}")
    message(STATUS "Dormouse: whisper.cpp patched (one encoder pass when the language is detected)")
endfunction()

# Included after every project() call (whisper.cpp's two and ggml's): defer once, at the top level.
get_property(dormouse_deferred GLOBAL PROPERTY DORMOUSE_WHISPER_PATCH_DEFERRED)
if(NOT dormouse_deferred AND PROJECT_NAME STREQUAL "whisper.cpp"
        AND CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
    set_property(GLOBAL PROPERTY DORMOUSE_WHISPER_PATCH_DEFERRED TRUE)
    cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL dormouse_patch_whisper)
endif()
