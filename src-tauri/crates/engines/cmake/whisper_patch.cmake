# Dormouse's patch to whisper.cpp, applied while whisper-rs-sys's build configures it.
#
# .cargo/config.toml names this file in CMAKE_PROJECT_INCLUDE, which whisper-rs-sys hands to
# CMake with every other CMAKE_* variable; CMake includes it after each project() call. At the
# end of the top-level CMakeLists (once the `whisper` library target exists) it compiles a
# patched copy of src/whisper.cpp, written into the build directory, in place of the original.
# The crate's sources are left untouched. A replacement whose text is not found exactly once
# stops the build with the reason: a whisper-rs-sys update must revisit this patch.
#
# The patch, five changes (docs/benchmarks.md, "whisper.cpp's build"):
#
# 1. One encoder pass when the language is detected. whisper_full runs the encoder for the
#    first window to detect the language (whisper_lang_auto_detect_with_state), then runs it
#    again on the same window, from the same log-mel frames, before decoding. The second pass
#    is skipped; the decoder reads the cross-attention keys and values the first one left in
#    the state (the detection's one decoder step touches only the self-attention cache, which
#    the decoding loop clears). Only when that pass saw the same audio context: whisper_full
#    sets this call's audio_ctx after the detection, which runs with the previous call's.
#    Beckett with detection: 4.20 s → 2.34 s, the same words.
# 2. The same words for the same audio on every call. whisper_full reseeds the random
#    generators of decoders 1..n on each call but decoder 0's only once, when the state is
#    made; the temperature fallback samples from it, so a model's third and fourth
#    transcriptions of Beckett said "Never tried" where the first two said "ever tried".
# 3. The encoder's self-attention on the CPU as two matrix products and a softmax (ggml's
#    llamafile kernels) instead of ggml's flash-attention kernel, which walks the keys one by
#    one for each query; values kept in f32. Beckett 2.33 → 1.7 s, the same words on Beckett
#    and both espeak sentences. The decoder keeps flash attention.
# 4. The encoder's 1500 keys padded to 1504 on the CPU (zero keys and values, masked out of the
#    softmax), so that the product of the attention weights and the values, whose depth is the
#    number of keys, goes through the llamafile kernels too: they take depths that are
#    multiples of 16 (AVX-512; 8 with AVX2) and left this product to ggml's row-by-row dot
#    products. Beckett 1.71–1.77 → 1.52–1.54 s, the same words on Beckett and both espeak
#    sentences.
# 5. ggml's large products handed to a packed GEMM when the program installs one
#    (`dormouse_ggml_set_mul_mat`, in a patched copy of ggml-cpu/ggml-cpu.c): every f32, f16 or
#    q8_0 × f32 product with at least 32 columns, in practice the encoder's. Dormouse installs
#    the `gemm` crate's kernels (engines::speech::packed_products), which pack both operands
#    for the caches and reach ~155 GFLOP/s a core with AVX-512 here, where the llamafile
#    kernels reach ~47. Each of ggml's threads computes a band of the product's rows, so no
#    thread waits on another. The decoder's few-token products stay with ggml.

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

# Compiles `text` in place of `target`'s source `relative` (as the target lists it), from a copy
# written into the build directory; its quoted includes still resolve through the target's
# include directories.
function(dormouse_compile_patched target relative text)
    set(patched "${CMAKE_BINARY_DIR}/dormouse/${relative}")
    file(WRITE "${patched}.new" "${text}")
    # Rewrite only when the text changed, so an unchanged patch does not rebuild the library.
    file(COPY_FILE "${patched}.new" "${patched}" ONLY_IF_DIFFERENT)
    get_target_property(sources ${target} SOURCES)
    string(REPLACE "." "\\." pattern "${relative}")
    # CMake may list it relative to the target's folder or as an absolute path.
    list(TRANSFORM sources REPLACE "^(.*/)?${pattern}$" "${patched}")
    if(NOT "${patched}" IN_LIST sources)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: `${target}` has no source ${relative}: ${sources}")
    endif()
    set_target_properties(${target} PROPERTIES SOURCES "${sources}")
endfunction()

# 5. ggml's large products handed to the packed GEMM the program installs, if any.
function(dormouse_patch_ggml_cpu)
    if(NOT TARGET ggml-cpu)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: no `ggml-cpu` target to patch")
    endif()
    get_target_property(source_dir ggml-cpu SOURCE_DIR)
    file(READ "${source_dir}/ggml-cpu/ggml-cpu.c" text)
    dormouse_replace_once(text
        "\nvoid ggml_compute_forward_mul_mat(\n"
        "\n// Dormouse: the packed GEMM the program installs for large products (none until it does).\n// Called by each of the product's threads for each 2-D slice; thread `ith` of `nth` computes\n// its band of the rows. Set before any graph is computed, never during one.\ntypedef void (*dormouse_mul_mat_fn)(int ith, int nth, int64_t rows, int64_t cols, int64_t depth,\n    int src0_type, const void * src0, size_t src0_row_bytes,\n    const float * src1, size_t src1_row_bytes, float * dst, size_t dst_row_bytes);\n\nstatic dormouse_mul_mat_fn dormouse_mul_mat = NULL;\n\nvoid dormouse_ggml_set_mul_mat(dormouse_mul_mat_fn mul_mat);\nvoid dormouse_ggml_set_mul_mat(dormouse_mul_mat_fn mul_mat) {\n    dormouse_mul_mat = mul_mat;\n}\n\nvoid ggml_compute_forward_mul_mat(\n")
    dormouse_replace_once(text
        "    // TODO: extract to \"extra_op\"\n#if GGML_USE_LLAMAFILE\n"
        "    // Dormouse: f32, f16 or q8_0 weights times f32 columns, at least 32 of them (the encoder's\n    // products; the decoder's few tokens stay with ggml), on the installed packed GEMM.\n    if (dormouse_mul_mat != NULL\n            && (src0->type == GGML_TYPE_F32 || src0->type == GGML_TYPE_F16 || src0->type == GGML_TYPE_Q8_0)\n            && src1->type == GGML_TYPE_F32\n            && ne11 >= 32 && ne01 >= 32 && ne00 >= 16\n            && nb01 % nb00 == 0 && nb11 % sizeof(float) == 0 && nb1 % sizeof(float) == 0) {\n        for (int64_t i13 = 0; i13 < ne13; i13++) {\n            for (int64_t i12 = 0; i12 < ne12; i12++) {\n                dormouse_mul_mat(ith, nth, ne01, ne11, ne00, (int) src0->type,\n                    (const char *)src0->data + i12/(ne12/ne02)*nb02 + i13/(ne13/ne03)*nb03, nb01,\n                    (const float *)((const char *)src1->data + i12*nb12 + i13*nb13), nb11,\n                    (float *)((char *)dst->data + i12*nb2 + i13*nb3), nb1);\n            }\n        }\n        return;\n    }\n\n    // TODO: extract to \"extra_op\"\n#if GGML_USE_LLAMAFILE\n")
    dormouse_compile_patched(ggml-cpu "ggml-cpu/ggml-cpu.c" "${text}")
endfunction()

function(dormouse_patch_whisper)
    if(NOT TARGET whisper)
        message(FATAL_ERROR "Dormouse's whisper.cpp patch: no `whisper` target to patch")
    endif()
    get_target_property(source_dir whisper SOURCE_DIR)
    file(READ "${source_dir}/whisper.cpp" text)

    # 1. One encoder pass when the language is detected.
    dormouse_replace_once(text
        "    // auto-detect language if not specified\n"
        "    // Dormouse: whether the encoder's output in the state is that of the first window (seek 0),\n    // left by the language detection below, and the audio context it was encoded with (the\n    // detection runs before this call's audio_ctx is set).\n    bool dormouse_encoded_seek0 = false;\n    int dormouse_encoded_audio_ctx = 0;\n\n    // auto-detect language if not specified\n")
    dormouse_replace_once(text
        "        state->lang_id = lang_id;\n        params.language = whisper_lang_str(lang_id);\n"
        "        state->lang_id = lang_id;\n        params.language = whisper_lang_str(lang_id);\n        dormouse_encoded_seek0 = true;\n        dormouse_encoded_audio_ctx = state->exp_n_audio_ctx;\n")
    dormouse_replace_once(text
        "        if (!whisper_encode_internal(*ctx, *state, seek, params.n_threads, params.abort_callback, params.abort_callback_user_data)) {\n"
        "        // Dormouse: the detection already encoded this window.\n        const bool dormouse_reuse = dormouse_encoded_seek0 && seek == 0\n            && state->exp_n_audio_ctx == dormouse_encoded_audio_ctx;\n        dormouse_encoded_seek0 = false;\n        if (dormouse_reuse) {\n            WHISPER_LOG_INFO(\"%s: dormouse: reusing the language detection's encoder pass\\n\", __func__);\n        }\n        if (!dormouse_reuse && !whisper_encode_internal(*ctx, *state, seek, params.n_threads, params.abort_callback, params.abort_callback_user_data)) {\n")

    # 2. Decoder 0's random generator reseeded on every call, like the others.
    dormouse_replace_once(text
        "        decoder.rng = std::mt19937(j);\n    }\n"
        "        decoder.rng = std::mt19937(j);\n    }\n    // Dormouse: decoder 0's generator too (seeded once, in whisper_init_state), so that the\n    // temperature fallback's sampling, and the words, do not depend on earlier calls.\n    state->decoders[0].rng = std::mt19937(0);\n")

    # 3. The encoder's attention on the CPU as two products and a softmax, with f32 values.
    dormouse_replace_once(text
        "            if (wctx.params.flash_attn) {\n                ggml_build_forward_expand(gf, ggml_cpy(ctx0, Kcur, ggml_view_1d(ctx0, kv_pad.k, n_ctx*n_state, 0)));\n"
        "            // Dormouse: flash attention in the encoder only on a GPU; on the CPU ggml's kernel\n            // walks the 1500 keys one by one for each query (expf and f16 sums per key).\n            if (wctx.params.flash_attn && wctx.params.use_gpu) {\n                ggml_build_forward_expand(gf, ggml_cpy(ctx0, Kcur, ggml_view_1d(ctx0, kv_pad.k, n_ctx*n_state, 0)));\n")
    dormouse_replace_once(text
        "                                    n_state_head, n_head, n_ctx),\n                                1, 2, 0, 3),\n                            wctx.itype);\n"
        "                                    n_state_head, n_head, n_ctx),\n                                1, 2, 0, 3),\n                            GGML_TYPE_F32); // Dormouse: f32 values, so the weights stay f32\n")

    # 4. The encoder's keys padded to a multiple of 16 on the CPU, the padding masked out of the
    #    softmax, so that the product of the attention weights and the values (a depth of 1500
    #    keys) goes through the llamafile kernels, which take depths that are multiples of 16
    #    (AVX-512; 8 with AVX2), instead of ggml's row-by-row dot products.
    dormouse_replace_once(text
        "static struct ggml_cgraph * whisper_build_graph_encoder(\n"
        "// Dormouse: `keys` padded with zeros along dimension `dim` (the keys' index) by `pad`.\nstatic struct ggml_tensor * dormouse_pad_keys(struct ggml_context * ctx, struct ggml_tensor * keys, int dim, int pad) {\n    if (pad == 0) {\n        return keys;\n    }\n    return ggml_pad(ctx, keys, dim == 0 ? pad : 0, dim == 1 ? pad : 0, dim == 2 ? pad : 0, 0);\n}\n\nstatic struct ggml_cgraph * whisper_build_graph_encoder(\n")
    dormouse_replace_once(text
        "    struct ggml_tensor * inpL = cur;\n\n    for (int il = 0; il < n_layer; ++il) {\n        const auto & layer = model.layers_encoder[il];\n"
        "    struct ggml_tensor * inpL = cur;\n\n    // Dormouse: the keys' padding for the attention's products on the CPU, and its mask: 0 for\n    // the real keys, -inf for the padding (log(step(n_ctx - 0.5 - i))), one row per query.\n    const int dormouse_keys_pad = wctx.params.use_gpu ? 0 : GGML_PAD(n_ctx, 16) - n_ctx;\n    struct ggml_tensor * dormouse_keys_mask = nullptr;\n    if (dormouse_keys_pad > 0) {\n        struct ggml_tensor * row = ggml_log(ctx0, ggml_step(ctx0, ggml_neg(ctx0,\n            ggml_arange(ctx0, 0.5f - n_ctx, 0.5f + dormouse_keys_pad, 1.0f))));\n        dormouse_keys_mask = ggml_repeat(ctx0, row,\n            ggml_new_tensor_2d(ctx0, GGML_TYPE_F32, n_ctx + dormouse_keys_pad, n_ctx));\n    }\n\n    for (int il = 0; il < n_layer; ++il) {\n        const auto & layer = model.layers_encoder[il];\n")
    dormouse_replace_once(text
        "                            ggml_cast(ctx0,\n                                ggml_reshape_3d(ctx0, Kcur, n_state_head, n_head, n_ctx),\n                                wctx.itype),\n                            0, 2, 1, 3);\n\n                // K * Q\n                struct ggml_tensor * KQ = ggml_mul_mat(ctx0, K, Q);\n\n                struct ggml_tensor * KQ_soft_max = ggml_soft_max_ext(ctx0, KQ, nullptr, KQscale, 0.0f);\n"
        "                            ggml_cast(ctx0,\n                                dormouse_pad_keys(ctx0, ggml_reshape_3d(ctx0, Kcur, n_state_head, n_head, n_ctx), 2, dormouse_keys_pad),\n                                wctx.itype),\n                            0, 2, 1, 3);\n\n                // K * Q\n                struct ggml_tensor * KQ = ggml_mul_mat(ctx0, K, Q);\n\n                struct ggml_tensor * KQ_soft_max = ggml_soft_max_ext(ctx0, KQ, dormouse_keys_mask, KQscale, 0.0f);\n")
    dormouse_replace_once(text
        "                            GGML_TYPE_F32); // Dormouse: f32 values, so the weights stay f32\n"
        "                            GGML_TYPE_F32); // Dormouse: f32 values, so the weights stay f32\n                V = dormouse_pad_keys(ctx0, V, 0, dormouse_keys_pad); // Dormouse: zeros for the padded keys\n")

    dormouse_compile_patched(whisper "whisper.cpp" "${text}")
    dormouse_patch_ggml_cpu()
    message(STATUS "Dormouse: whisper.cpp patched (one encoder pass on detection, decoder 0 reseeded, encoder attention as products, keys padded for llamafile, large products on the installed GEMM)")
endfunction()

# Included after every project() call (whisper.cpp's two and ggml's): defer once, at the top level.
get_property(dormouse_deferred GLOBAL PROPERTY DORMOUSE_WHISPER_PATCH_DEFERRED)
if(NOT dormouse_deferred AND PROJECT_NAME STREQUAL "whisper.cpp"
        AND CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
    set_property(GLOBAL PROPERTY DORMOUSE_WHISPER_PATCH_DEFERRED TRUE)
    cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL dormouse_patch_whisper)
endif()
